//! Opening what a command needs: settings, the store, the projects and the engine.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use orch_engine::{Engine, Project, Reporter};
use orch_store::{SqliteStore, Store};

use crate::error::UsageError;
use crate::settings::Settings;

pub struct Context {
    pub settings: Settings,
    pub engine: Arc<Engine>,
}

pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(UsageError(format!(
            "store url `{url}`: PostgreSQL is not supported yet; use sqlite://FILE"
        ))
        .into());
    }
    let store = SqliteStore::open(url)
        .await
        .with_context(|| "opening the store".to_owned())?;
    Ok(Arc::new(store))
}

impl Context {
    pub async fn open(config: &Path, reporter: Arc<dyn Reporter>) -> anyhow::Result<Self> {
        let settings = Settings::load(config)?;
        let store = open_store(&settings.store_url).await?;
        let mut projects = Vec::new();
        for p in &settings.projects {
            projects.push(Project::load(p.clone())?);
        }
        let mut engine_settings = orch_engine::Settings::new(orch_engine::owner_name());
        engine_settings.lease = std::time::Duration::from_secs(settings.lease_secs);
        engine_settings.max_parallel = settings.max_parallel.max(1);
        engine_settings.staging_tolerance = settings.staging_tolerance;
        engine_settings.crashpoint = settings.crashpoint.clone();
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
