#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod fd_passing;
pub mod memory;
pub mod process;
pub mod socket_file;
pub mod unix_socket;
