//! Integration tests of the process, hook and docker deployers: real git repos, real Python
//! instances and docker containers on loopback ports, real health probes and checks.

mod confined;
mod docker;
mod docker_env;
mod hook;
mod hook_compat;
mod promote;
mod selfdeploy;
#[path = "../../../../test-support/skip.rs"]
mod skip;
mod staging;
mod support;
