//! Library half of `tether-tools`: the pieces the `tether` binary shares with
//! the end-to-end tests.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod http;
pub mod human;
