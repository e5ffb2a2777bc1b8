//! The SRU recurrence: the one sequential part of WaveCRN.
//!
//! Everything else in an SRU layer is a matrix product over all time steps at once; what is
//! left is, for every unit independently,
//!
//! ```text
//! f = sigmoid(u1 + b_f + v_f * c)      r = sigmoid(u2 + b_r + v_r * c)
//! c = u0 + (c - u0) * f                h = s + (c - s) * r
//! ```
//!
//! [`kernel`] runs it fast; [`op`] wraps it as a tract operator that replaces the ONNX `Scan`.

pub mod kernel;
pub mod lanes;
pub mod op;

pub use kernel::{Kernel, Recurrence};
