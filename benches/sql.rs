//! The SQL read/write classifier on typical statements, PostgreSQL's and MySQL's dialect
//! (target: ≤ 150 ns for a 100-byte SELECT).

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
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
    classify_each(&mut group, &sql, statements);
    // The same for MySQL's dialect (`?` placeholders, backticks, `#` comments).
    let mysql = SqlClassifier::mysql();
    let statements = [
        (
            "mysql select, 100 bytes",
            "SELECT id, name, email, created_at FROM users WHERE account_id = ? AND deleted_at IS NULL LIMIT 5000",
        ),
        (
            "mysql select with backticks, comment and literal",
            "# dashboard\nSELECT `o`.`id`, `o`.`total` FROM `orders` o JOIN users u ON u.id = o.user_id \
             WHERE u.email = 'a@example.com' AND o.state <> 'DELETED' ORDER BY o.id DESC",
        ),
        ("mysql insert", "INSERT INTO visits (user_id, at) VALUES (?, NOW())"),
        ("mysql lock in share mode", "SELECT * FROM jobs WHERE state = 'ready' LIMIT 1 LOCK IN SHARE MODE"),
    ];
    classify_each(&mut group, &mysql, statements);
    group.finish();
}

/// Benches `sql` on each statement; the first is the 100-byte SELECT of the target.
fn classify_each(
    group: &mut BenchmarkGroup<'_, WallTime>,
    sql: &SqlClassifier,
    statements: [(&str, &str); 4],
) {
    assert_eq!(statements[0].1.len(), 100);
    for (name, statement) in statements {
        group.bench_function(name, |b| b.iter(|| sql.classify(black_box(statement))));
    }
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
