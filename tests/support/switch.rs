//! An in-process endpoint that fails while its switch is on and counts its calls, for tests
//! that set health by hand. Shared through `#[path]`.
#![allow(dead_code)] // each includer uses a different part

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tower::service_fn;

#[derive(Clone, Default)]
pub struct Switch {
    pub failing: Arc<AtomicBool>,
    pub calls: Arc<AtomicUsize>,
}

impl Switch {
    /// The endpoint: answers `()` or, while failing, an I/O error.
    pub fn service(
        &self,
    ) -> impl tower::Service<
        (),
        Response = (),
        Error = std::io::Error,
        Future = impl std::future::Future<Output = Result<(), std::io::Error>> + Send,
    > + Clone
           + Send
           + Sync {
        let this = self.clone();
        service_fn(move |()| {
            this.calls.fetch_add(1, Ordering::Relaxed);
            let failing = this.failing.load(Ordering::Relaxed);
            async move {
                match failing {
                    true => Err(std::io::Error::other("down")),
                    false => Ok(()),
                }
            }
        })
    }

    /// Calls it has had.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}
