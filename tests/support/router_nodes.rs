//! In-process nodes for the replica router's tests: services that answer with their name
//! (or fail), and requests with a session header.
#![allow(dead_code)] // each includer uses a different part

use tower::{service_fn, Service};

pub type Request = http::Request<String>;

/// A node that answers with its name.
pub fn node(
    name: &'static str,
) -> impl Service<
    Request,
    Response = &'static str,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<&'static str, std::io::Error>> + Send,
> + Clone
       + Send
       + Sync {
    node_failing(name, false)
}

/// A node that answers with its name, or fails (as a crashed one would) when `failing`.
pub fn node_failing(
    name: &'static str,
    failing: bool,
) -> impl Service<
    Request,
    Response = &'static str,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<&'static str, std::io::Error>> + Send,
> + Clone
       + Send
       + Sync {
    service_fn(move |_: Request| async move {
        match failing {
            true => Err(std::io::Error::other("node down")),
            false => Ok(name),
        }
    })
}

pub fn request(method: &str, user: &str) -> Request {
    http::Request::builder()
        .method(method)
        .header("x-user", user)
        .body(String::new())
        .unwrap()
}
