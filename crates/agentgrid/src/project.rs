//! Finding the project on disk and opening its store and manifests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use store::{SqliteStore, Store};

use crate::user_error;

pub const STATE_DIR: &str = ".agentgrid";
pub const DATABASE: &str = "agentgrid.db";

/// An initialised project: a git repository with `.agentgrid/` in it.
pub struct Project {
    pub root: PathBuf,
    pub state_dir: PathBuf,
}

impl Project {
    /// The project at `explicit`, or the nearest one at or above the current directory.
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Project> {
        let start = match explicit {
            Some(p) => p.to_path_buf(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        let start = start
            .canonicalize()
            .map_err(|e| user_error(format!("{}: {e}", start.display())))?;
        let mut dir = start.as_path();
        loop {
            let state_dir = dir.join(STATE_DIR);
            if state_dir.join("config.yaml").exists() || state_dir.join(DATABASE).exists() {
                return Ok(Project {
                    root: dir.to_path_buf(),
                    state_dir,
                });
            }
            match dir.parent() {
                Some(parent) if explicit.is_none() => dir = parent,
                _ => break,
            }
        }
        Err(user_error(format!(
            "no agentgrid project at {}: run `agentgrid init` in a git repository first",
            start.display()
        )))
    }

    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.open_store(&store::OpenOptions::default())
    }

    /// The store for the engine, which follows every other process's commits: its own do not
    /// ring the bell (see `store::bell_path`).
    pub async fn engine_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.open_store(&store::OpenOptions {
            ring_bell: false,
            ..Default::default()
        })
    }

    fn open_store(&self, options: &store::OpenOptions) -> anyhow::Result<Arc<dyn Store>> {
        let path = self.state_dir.join(DATABASE);
        let store = SqliteStore::open_with(&path, options)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        Ok(Arc::new(store))
    }

    /// The application layer on the project's database and the system clock, knowing the
    /// agencies, roles and topics of the manifests (none when they do not load: `validate`
    /// says why, and nothing that needs them is let through unchecked by the agents' side).
    pub async fn app(&self) -> anyhow::Result<app::App> {
        let app = app::App::new(self.store().await?, Arc::new(domain::SystemClock));
        Ok(match manifest::load_project(&self.state_dir) {
            Ok(project) => app.with_directory(Arc::new(engine::directory(&project))),
            Err(_) => app,
        })
    }

    /// The manifests, or every problem in them as file:line:col lines.
    pub fn manifests(&self) -> anyhow::Result<manifest::Project> {
        manifest::load_project(&self.state_dir).map_err(|diagnostics| {
            anyhow::Error::new(crate::UserError(format!(
                "the manifests have problems:\n{diagnostics}\nfix them, then check with `agentgrid validate`"
            )))
        })
    }
}
