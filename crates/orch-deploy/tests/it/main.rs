//! Integration tests of the process and hook deployers: real git repos, real Python instances on loopback
//! ports, real health probes and checks.

mod hook;
mod promote;
mod staging;
mod support;
