//! Integration tests of the process deployer: real git repos, real Python instances on loopback
//! ports, real health probes and checks.

mod promote;
mod staging;
mod support;
