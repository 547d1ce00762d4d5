//! Load measurement: the peak-EWMA latency estimator that latency-aware policies read.
//!
//! A leaf of the crate: it knows nothing of endpoints or pools. Each endpoint keeps one
//! estimate (in its counters), and the estimator's settings ([`PeakEwma`]) come from the
//! policy that asked for latency to be measured.

mod peak_ewma;

pub(crate) use peak_ewma::RttEstimate;
pub use peak_ewma::{LatencyClock, PeakEwma};
