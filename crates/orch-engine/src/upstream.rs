//! The default branch as a project knows it: the forge's when the project has one (fetched,
//! never pushed), else the local repository's.
//!
//! Candidates are integrated with its tip, a promotion is checked against it, and after a
//! promotion it moves to exactly the promoted candidate inside the promotion's critical section:
//! locally by a fast-forward, on a forge by merging the item's pull request as a fast-forward
//! (the candidate is already the merge commit), guarded by the head orch checked. Either way the
//! default branch then holds the very commit prod runs. The local default branch follows the
//! forge's whenever it can fast-forward to it; orch never pushes it.
//!
//! Never here: moving the default branch to anything but the promoted candidate, or moving it
//! backwards.

use orch_git::{GitError, Repo};
use orch_integrations::MergeStyle;
use orch_store::ItemRecord;

use crate::integration::short;
use crate::project::{Project, branch};
use crate::remotes::pr_cursor_name;
use crate::{Engine, EngineError};

/// Where a promoted candidate goes, settled before prod is touched.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The local default branch fast-forwards.
    Local,
    /// The item's pull request (this number) is merged as a fast-forward on the forge.
    PullRequest(u64),
}

/// Why the default branch could not be moved to a promoted candidate.
#[derive(Debug)]
pub(crate) enum MoveRefused {
    /// It moved since the candidate was validated (another item, a person): integrate again.
    Moved(String),
    /// Anything else (the forge unreachable, a protected branch, a git error): a person looks.
    Failed(String),
}

impl Engine {
    /// The commit the default branch is at now. With a forge, its default branch is fetched
    /// first, and the local one follows it when that is a fast-forward.
    pub(crate) async fn default_tip_now(
        &self,
        project: &Project,
        repo: &Repo,
    ) -> Result<String, String> {
        let Some(link) = &project.settings.remotes.forge else {
            return repo.default_tip().await.map_err(|e| e.to_string());
        };
        let (name, sha) = link.forge.fetch_default(repo).await.map_err(|e| {
            format!(
                "the {} forge's default branch could not be read: {e}",
                link.forge.kind()
            )
        })?;
        let local = repo.default_branch().await.map_err(|e| e.to_string())?;
        if name != local {
            return Err(format!(
                "the forge's default branch is `{name}`, the repository's is `{local}`: orch \
                 integrates and promotes against one default branch; make them the same"
            ));
        }
        follow_locally(repo, &sha).await;
        Ok(sha)
    }

    /// What [`Engine::move_default`] will move, checked before the promotion so that a forge
    /// that cannot take the merge leaves prod untouched: the forge's branch of the item must be
    /// at the candidate (orch merges only what its stages passed), and its pull request exists.
    pub(crate) async fn prepare_move(
        &self,
        project: &Project,
        repo: &Repo,
        item: &ItemRecord,
        sha: &str,
    ) -> Result<Target, String> {
        let Some(link) = &project.settings.remotes.forge else {
            return Ok(Target::Local);
        };
        let branch = branch(&item.id);
        let at = link
            .forge
            .fetch_branch(repo, &branch)
            .await
            .map_err(|e| format!("the {} forge's `{branch}`: {e}", link.forge.kind()))?;
        if at != sha {
            return Err(format!(
                "the {} forge's `{branch}` is at {}, not at the validated candidate {}: orch \
                 merges only what its stages passed",
                link.forge.kind(),
                short(&at),
                short(sha)
            ));
        }
        let number = self
            .pull_request_of(project, item)
            .await
            .map_err(|e| format!("the pull request of `{branch}`: {e}"))?;
        Ok(Target::PullRequest(number))
    }

    /// Moves the default branch from `tip` to the promoted candidate `sha` (which contains it),
    /// returning what was done, for the deploy's log.
    pub(crate) async fn move_default(
        &self,
        project: &Project,
        repo: &Repo,
        item: &ItemRecord,
        target: Target,
        tip: &str,
        sha: &str,
    ) -> Result<String, MoveRefused> {
        let default = repo
            .default_branch()
            .await
            .map_err(|e| MoveRefused::Failed(e.to_string()))?;
        let (Target::PullRequest(number), Some(link)) = (target, &project.settings.remotes.forge)
        else {
            return match repo.advance_default(tip, sha).await {
                Ok(()) => Ok(format!(
                    "{default} fast-forwarded from {} to {}: it holds exactly what prod runs",
                    short(tip),
                    short(sha)
                )),
                Err(e @ GitError::ConcurrentUpdate { .. }) => {
                    Err(MoveRefused::Moved(format!("{default} could not move: {e}")))
                }
                Err(e) => Err(MoveRefused::Failed(format!(
                    "{default} could not move: {e}"
                ))),
            };
        };
        let forge = &link.forge;
        let message = format!("Merge {}: {}", item.id, item.title);
        if let Err(e) = forge
            .merge_pull_request(number, sha, MergeStyle::FastForward, &message)
            .await
        {
            let refused = format!(
                "the {} forge did not merge pull request #{number} as a fast-forward to {}: {e}",
                forge.kind(),
                short(sha)
            );
            // Moved (integrate again) or not (a person must look): the forge itself tells.
            return match forge.fetch_default(repo).await {
                Ok((_, now)) if now != tip && now != sha => Err(MoveRefused::Moved(format!(
                    "{refused}; {default} on the forge moved from {} to {}",
                    short(tip),
                    short(&now)
                ))),
                _ => Err(MoveRefused::Failed(refused)),
            };
        }
        let now = forge
            .fetch_default(repo)
            .await
            .map(|(_, now)| now)
            .unwrap_or_default();
        follow_locally(repo, sha).await;
        let mut line = format!(
            "pull request #{number} merged on the {} forge: {default} fast-forwarded from {} to \
             {}, exactly what prod runs",
            forge.kind(),
            short(tip),
            short(sha)
        );
        if now != sha {
            line.push_str(&format!(
                " (the forge's {default} is at {} since: someone pushed after the merge)",
                short(&now)
            ));
        }
        Ok(line)
    }

    /// The number of the item's pull request: the one the event follower opened, else found or
    /// opened now (and remembered, so the follower does not open another).
    pub(crate) async fn pull_request_of(
        &self,
        project: &Project,
        item: &ItemRecord,
    ) -> Result<u64, String> {
        let cursor = pr_cursor_name(&item.id);
        let known = self
            .store
            .cursor(&cursor)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(number) = u64::try_from(known)
            && number > 0
        {
            return Ok(number);
        }
        let Some(link) = &project.settings.remotes.forge else {
            return Err("the project has no forge".into());
        };
        let pull = link
            .forge
            .open_pull_request(
                &branch(&item.id),
                &format!("{}: {}", item.id, item.title),
                &item.body,
            )
            .await
            .map_err(|e| e.to_string())?;
        let number = i64::try_from(pull.number).unwrap_or(i64::MAX);
        self.store
            .set_cursor(&cursor, number)
            .await
            .map_err(|e: orch_store::StoreError| EngineError::from(e).to_string())?;
        Ok(pull.number)
    }
}

/// The local default branch follows the forge's to `sha` when that is a fast-forward; when the
/// local one has commits the forge lacks it stays (orch never pushes it), and a warning says so.
async fn follow_locally(repo: &Repo, sha: &str) {
    let Ok(local) = repo.default_tip().await else {
        return;
    };
    if local == sha {
        return;
    }
    match repo.is_ancestor(&local, sha).await {
        Ok(true) => {
            if let Err(e) = repo.advance_default(&local, sha).await {
                tracing::warn!("the local default branch could not follow the forge's: {e}");
            }
        }
        Ok(false) => tracing::warn!(
            "the local default branch has commits the forge's lacks; it stays at {}",
            short(&local)
        ),
        Err(e) => tracing::warn!("the local default branch: {e}"),
    }
}
