//! Sticky sessions over in-process loopback HTTP servers: a consistent hash on a `session`
//! cookie keeps every session on one backend, and removing a backend moves only the sessions
//! that were on it.
//!
//! ```sh
//! cargo run --example sticky_sessions
//! ```

#[path = "support/backend.rs"]
mod backend;

use std::collections::HashMap;
use tower::ServiceExt;
use tower_lb::policy::ConsistentHash;
use tower_lb::sticky::Cookie;
use tower_lb::{Balance, BoxError};

const SESSIONS: usize = 40;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backends = backend::start_many(4).await?;
    let client = reqwest::Client::new();
    let lb = Balance::builder(ConsistentHash::new(Cookie::new("session")))
        .endpoints(backends.iter().map(|b| {
            let endpoint = backend::http_endpoint(client.clone(), &b.url());
            (b.name.clone(), endpoint)
        }))
        .build()?;
    let request = |session: usize| {
        http::Request::get("http://pool/cart")
            .header("cookie", format!("theme=dark; session=s{session}"))
            .body(String::new())
    };

    // Each session sends five requests: all land on one backend.
    let mut placed = HashMap::new();
    for session in 0..SESSIONS {
        for _ in 0..5 {
            let backend = lb.clone().oneshot(request(session)?).await?;
            let first = placed.entry(session).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "session s{session} moved");
        }
    }
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    placed
        .values()
        .for_each(|b| *per_backend.entry(b.as_str()).or_default() += 1);
    println!("{SESSIONS} sessions, five requests each, every one on a single backend:");
    for backend in &backends {
        println!(
            "  {}: {} sessions",
            backend.name,
            per_backend.get(backend.name.as_str()).unwrap_or(&0)
        );
    }

    // b2 leaves the pool: only its sessions move.
    lb.remove(&"b2".to_string())?;
    let mut moved = 0;
    for session in 0..SESSIONS {
        let backend = lb.clone().oneshot(request(session)?).await?;
        if backend != placed[&session] {
            assert_eq!(placed[&session], "b2", "a session that was not on b2 moved");
            moved += 1;
        }
    }
    println!(
        "b2 removed: {moved} sessions moved, all of them from b2 ({} were there); the other {} stayed",
        per_backend.get("b2").unwrap_or(&0),
        SESSIONS - moved
    );
    Ok(())
}
