//! The SQL read/write classifier on typical statements (target: ≤ 150 ns for a 100-byte
//! SELECT).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tower_lb::replica::SqlClassifier;

fn bench_classify(c: &mut Criterion) {
    let sql = SqlClassifier::new();
    let mut group = c.benchmark_group("sql classify");
    let statements = [
        (
            "select, 100 bytes",
            "SELECT id, name, email, created_at FROM users WHERE account_id = $1 AND deleted_at IS NULL LIMIT 500",
        ),
        (
            "select with comment and literal, 160 bytes",
            "/* dashboard */ SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id \
             WHERE u.email = 'a@example.com' AND o.state <> 'DELETED' ORDER BY o.id DESC",
        ),
        ("insert", "INSERT INTO visits (user_id, at) VALUES ($1, now())"),
        ("select for update", "SELECT * FROM jobs WHERE state = 'ready' FOR UPDATE SKIP LOCKED LIMIT 1"),
    ];
    assert_eq!(statements[0].1.len(), 100);
    for (name, statement) in statements {
        group.bench_function(name, |b| b.iter(|| sql.classify(black_box(statement))));
    }
    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
