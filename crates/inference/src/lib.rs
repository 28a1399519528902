//! Routed tag prediction.
