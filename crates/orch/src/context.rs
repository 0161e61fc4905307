//! Opening what a command needs: settings, the store, the projects and the engine.

use std::path::Path;
use std::sync::Arc;

use orch_engine::{Engine, Project, Reporter};
use orch_store::Store;

use crate::error::UsageError;
use crate::settings::Settings;

pub struct Context {
    pub settings: Settings,
    pub engine: Arc<Engine>,
}

/// Opens the store named by `url`: `sqlite://FILE` (the default) or `postgres://...`.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    orch_store::open_store(url).await.map_err(|e| match e {
        orch_store::StoreError::Open { .. } => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other).context("opening the store"),
    })
}

impl Context {
    pub async fn open(config: &Path, reporter: Arc<dyn Reporter>) -> anyhow::Result<Self> {
        let settings = Settings::load(config)?;
        let store = open_store(&settings.store_url).await?;
        let mut projects = Vec::new();
        for p in &settings.projects {
            let sandbox = settings
                .sandboxes
                .get(&p.id)
                .cloned()
                .unwrap_or_else(orch_process::Sandbox::for_agents);
            projects.push(Project::load(p.clone())?.with_sandbox(sandbox)?);
        }
        let mut engine_settings = orch_engine::Settings::new(orch_engine::owner_name());
        engine_settings.lease = std::time::Duration::from_secs(settings.lease_secs);
        engine_settings.max_parallel = settings.max_parallel.max(1);
        engine_settings.claim_limits = settings.claim_limits;
        engine_settings.staging_tolerance = settings.staging_tolerance;
        engine_settings.crashpoint = settings.crashpoint.clone();
        if let Some(traces) = &settings.traces {
            engine_settings.telemetry = orch_engine::telemetry::Telemetry::otlp(
                traces.url.clone(),
                traces.service_name.clone(),
            );
        }
        engine_settings.public_url = settings.public_url.clone();
        let engine = Arc::new(Engine::new(store, projects, engine_settings, reporter));
        engine.register_projects().await?;
        Ok(Self { settings, engine })
    }

    /// The project a command means: the one named, or the only one configured.
    pub fn project_id(&self, name: Option<&str>) -> anyhow::Result<orch_core::ProjectId> {
        match name {
            Some(n) => Ok(orch_core::ProjectId::parse(n).map_err(|e| UsageError(e.to_string()))?),
            None => {
                let mut ids = self.engine.projects().map(|p| p.id().clone());
                match (ids.next(), ids.next()) {
                    (Some(id), None) => Ok(id),
                    (None, _) => Err(UsageError(format!(
                        "{} lists no projects",
                        self.settings.path.display()
                    ))
                    .into()),
                    (Some(_), Some(_)) => Err(UsageError(
                        "several projects are configured; pass --project NAME".into(),
                    )
                    .into()),
                }
            }
        }
    }
}

pub fn item_id(s: &str) -> anyhow::Result<orch_core::ItemId> {
    Ok(orch_core::ItemId::parse(s).map_err(|e| UsageError(e.to_string()))?)
}
