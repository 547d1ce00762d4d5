//! Load accounting: the drop-safe in-flight guard and the peak-EWMA latency estimator.

mod in_flight;
mod peak_ewma;

pub(crate) use in_flight::InFlight;
pub use peak_ewma::PeakEwma;
