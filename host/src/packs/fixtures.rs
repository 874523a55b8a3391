//! LinkedPack tests without a running host: JSON fixtures, each a change in and
//! the actions expected out (or the error expected).
//!
//! ```json
//! { "name": "High priority sets impact 1, urgency 2",
//!   "change": { ...a seam::model::Change... },
//!   "records": [ {"system": "salesforce", "object": "Account", "id": "001…", "fields": {"Tier__c": "Gold"}} ],
//!   "expect": [ {"update": {"target": {"kind": "linked"}, "fields": [...]}} ] }
//! ```
//! `expect_error` (a substring of the refusal) takes the place of `expect`
//! for a change the pack must reject. `records` answer the pack's lookups,
//! within the grants of its manifest.

use crate::model::{Action, Change};
use crate::runtime::{LinkedPack, StaticRecord, StaticRecords};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub name: Option<String>,
    pub change: Change,
    #[serde(default)]
    pub records: Vec<StaticRecord>,
    #[serde(default)]
    pub expect: Option<Vec<Action>>,
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// How one fixture went.
#[derive(Debug)]
pub struct Outcome {
    pub file: PathBuf,
    pub name: String,
    /// None: passed. Some: what differed.
    pub failure: Option<String>,
}

/// Every `*.json` fixture in `dir`, in file-name order.
pub fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, Fixture)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading fixtures from {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no fixtures (*.json) in {}", dir.display());
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let fixture: Fixture = serde_json::from_str(&text).with_context(|| {
                format!("{} is not a fixture (change, expect or expect_error, records)", file.display())
            })?;
            if fixture.expect.is_some() == fixture.expect_error.is_some() {
                bail!("{}: give exactly one of `expect` and `expect_error`", file.display());
            }
            Ok((file, fixture))
        })
        .collect()
}

/// Run one fixture against a loaded pack.
pub async fn run(linked: &LinkedPack, file: &Path, fixture: &Fixture) -> Outcome {
    let name =
        fixture.name.clone().unwrap_or_else(|| file.file_stem().unwrap_or_default().to_string_lossy().into_owned());
    let records = Arc::new(StaticRecords { records: fixture.records.clone() });
    let got = linked.run(&fixture.change, records).await;
    let json = |actions: &[Action]| serde_json::to_string_pretty(actions).unwrap_or_default();
    let failure = match (&fixture.expect, &fixture.expect_error, got) {
        (Some(want), _, Ok(got)) if *want == got => None,
        (Some(want), _, Ok(got)) => Some(format!("expected actions:\n{}\ngot:\n{}", json(want), json(&got))),
        (Some(_), _, Err(e)) => Some(format!("expected actions, but the pack failed: {e}")),
        (None, Some(want), Err(e)) if e.to_string().contains(want.as_str()) => None,
        (None, Some(want), Err(e)) => Some(format!("expected an error containing {want:?}, got: {e}")),
        (None, Some(want), Ok(got)) => {
            Some(format!("expected an error containing {want:?}, but the pack returned:\n{}", json(&got)))
        }
        (None, None, _) => Some("the fixture has neither `expect` nor `expect_error`".into()),
    };
    Outcome { file: file.to_path_buf(), name, failure }
}
