//! `[docker.staging]` and `[docker.prod]`: what a container gets from the host per environment,
//! an env file (`.env.staging`) and bind mounts, so a check run inside the staging container
//! (the seeds' B6) sees staging's own configuration.
//!
//! It must never let a path reach `docker run` that docker would read differently: sources and
//! env files are absolute host paths (never the agent-written worktree's relative ones), no `..`,
//! no `,` (the `--mount` separator); mounts are read-only unless `read_write = true`.

use std::path::{Component, Path, PathBuf};

use super::config_err;
use super::raw::RawDockerEnv;
use crate::error::DeployError;

/// What one environment's container gets from the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerEnvSpec {
    /// `docker run --env-file`: an absolute host path, read by docker when the container starts.
    pub env_file: Option<PathBuf>,
    pub mounts: Vec<BindMount>,
}

/// `--mount type=bind,source=...,target=...[,readonly]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    /// Read-only unless the project says `read_write = true`.
    pub read_only: bool,
}

impl BindMount {
    /// The value of `docker run --mount`.
    pub fn mount_arg(&self) -> String {
        let mut arg = format!(
            "type=bind,source={},target={}",
            self.source.display(),
            self.target
        );
        if self.read_only {
            arg.push_str(",readonly");
        }
        arg
    }
}

pub(super) fn docker_env_from_raw(
    table: &str,
    raw: Option<&RawDockerEnv>,
) -> Result<DockerEnvSpec, DeployError> {
    let Some(raw) = raw else {
        return Ok(DockerEnvSpec::default());
    };
    let env_file = raw
        .env_file
        .as_deref()
        .map(|path| host_path(&format!("{table}.env_file"), path))
        .transpose()?;
    let mut mounts = Vec::with_capacity(raw.mounts.len());
    for (index, mount) in raw.mounts.iter().enumerate() {
        let field = format!("{table}.mounts[{index}]");
        let source = host_path(&format!("{field}.source"), &mount.source)?;
        let target = container_path(&format!("{field}.target"), &mount.target)?;
        if mounts.iter().any(|m: &BindMount| m.target == target) {
            return Err(config_err(
                format!("{field}.target"),
                format!("`{target}` is mounted twice"),
            ));
        }
        mounts.push(BindMount {
            source,
            target,
            read_only: !mount.read_write,
        });
    }
    Ok(DockerEnvSpec { env_file, mounts })
}

/// An absolute, normalized host path without the `--mount` separator.
fn host_path(field: &str, text: &str) -> Result<PathBuf, DeployError> {
    let path = Path::new(text);
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !text.contains(',')
        && !text.chars().any(char::is_control);
    if plain {
        Ok(path.to_path_buf())
    } else {
        Err(config_err(
            field,
            format!(
                "`{text}` must be an absolute host path without `..` or `,` (a file orch's host keeps, not one in the worktree)"
            ),
        ))
    }
}

/// An absolute path inside the container, not `/` itself.
fn container_path(field: &str, text: &str) -> Result<String, DeployError> {
    let path = Path::new(text);
    let plain = path.is_absolute()
        && path.components().count() > 1
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !text.contains(',')
        && !text.chars().any(char::is_control);
    if plain {
        Ok(text.to_owned())
    } else {
        Err(config_err(
            field,
            format!(
                "`{text}` must be an absolute path in the container, not `/`, without `..` or `,`"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::DeployConfig;
    use crate::error::DeployError;

    fn field_of(table: &str) -> String {
        match DeployConfig::from_toml(&format!("kind = \"docker\"\n{table}")) {
            Err(DeployError::Config { field, .. }) => field,
            Err(other) => other.to_string(),
            Ok(_) => panic!("accepted: {table}"),
        }
    }

    #[test]
    fn reads_an_env_file_and_read_only_mounts_per_environment() {
        let text = "kind = \"docker\"\n[docker.staging]\nenv_file = \"/etc/shop/.env.staging\"\n\
                    mounts = [{ source = \"/srv/repos/shop\", target = \"/repos/shop\" },\n\
                    { source = \"/srv/cache\", target = \"/cache\", read_write = true }]\n";
        let Ok(DeployConfig::Docker(spec)) = DeployConfig::from_toml(text) else {
            panic!("a valid docker config");
        };
        let staging = &spec.on_staging;
        assert_eq!(
            staging.env_file.as_deref(),
            Some(std::path::Path::new("/etc/shop/.env.staging"))
        );
        let args: Vec<String> = staging.mounts.iter().map(|m| m.mount_arg()).collect();
        assert_eq!(
            args,
            [
                "type=bind,source=/srv/repos/shop,target=/repos/shop,readonly",
                "type=bind,source=/srv/cache,target=/cache"
            ]
        );
        assert_eq!(spec.on_prod, super::DockerEnvSpec::default());
    }

    #[test]
    fn paths_docker_could_misread_are_refused_with_their_field() {
        let cases = [
            (
                "[docker.staging]\nenv_file = \".env.staging\"\n",
                "docker.staging.env_file",
            ),
            (
                "[docker.prod]\nenv_file = \"/etc/../shadow\"\n",
                "docker.prod.env_file",
            ),
            (
                "[docker.staging]\nmounts = [{ source = \"repo\", target = \"/r\" }]\n",
                "docker.staging.mounts[0].source",
            ),
            (
                "[docker.staging]\nmounts = [{ source = \"/a,readonly=false\", target = \"/r\" }]\n",
                "docker.staging.mounts[0].source",
            ),
            (
                "[docker.staging]\nmounts = [{ source = \"/a\", target = \"r\" }]\n",
                "docker.staging.mounts[0].target",
            ),
            (
                "[docker.staging]\nmounts = [{ source = \"/a\", target = \"/\" }]\n",
                "docker.staging.mounts[0].target",
            ),
            (
                "[docker.prod]\nmounts = [{ source = \"/a\", target = \"/r\" }, { source = \"/b\", target = \"/r\" }]\n",
                "docker.prod.mounts[1].target",
            ),
        ];
        for (table, expected) in cases {
            assert_eq!(field_of(table), expected, "{table}");
        }
        assert!(field_of("[docker.staging]\nenv = 1\n").contains("unknown field"));
    }
}
