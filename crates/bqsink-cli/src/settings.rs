//! The configuration in effect: flags > environment > the `--config` TOML file > defaults.
//!
//! The file uses [`DestinationConfig`]'s property names (`project_id`, `batch_size`, …); a key
//! that is not one of them is an error naming the closest valid key. Every layer is merged as
//! JSON over the defaults, so each property keeps the source it came from (shown by
//! `bqsink config`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use bqsink::{DestinationConfig, Endpoints};
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::Value as Json;

/// Environment variable naming the project.
pub(crate) const ENV_PROJECT: &str = "BIGQUERY_PROJECT_ID";
/// Environment variable naming the dataset.
pub(crate) const ENV_DATASET: &str = "BIGQUERY_DATASET";
/// Environment variable turning automatic table creation on or off.
pub(crate) const ENV_AUTO_TABLES: &str = "BIGQUERY_AUTO_TABLE_MANAGEMENT";
/// Environment variable naming a service-account key file.
pub(crate) const ENV_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Environment variable naming an emulator's REST `host:port`.
pub(crate) const ENV_EMULATOR: &str = "BIGQUERY_EMULATOR_HOST";
/// Environment variable naming an emulator's Storage Write gRPC `host:port`.
pub(crate) const ENV_STORAGE_EMULATOR: &str = "BIGQUERY_STORAGE_EMULATOR_HOST";

/// Where a property's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// A property set by a command-line flag.
#[derive(Clone, Debug)]
pub(crate) struct FlagValue {
    key: &'static str,
    flag: &'static str,
    value: Json,
}

impl FlagValue {
    /// `flag` sets `key` to `value` (anything serialisable the way the property is).
    pub(crate) fn new(key: &'static str, flag: &'static str, value: impl serde::Serialize) -> Self {
        Self { key, flag, value: serde_json::to_value(value).unwrap_or(Json::Null) }
    }
}

/// The configuration in effect and where each part came from.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) config: DestinationConfig,
    /// Source of every property that is not at its default.
    pub(crate) sources: BTreeMap<String, Source>,
    pub(crate) endpoints: Endpoints,
    /// The variables that named an emulator, when one is used.
    pub(crate) endpoint_source: Option<String>,
}

impl Settings {
    /// Where `key` came from.
    pub(crate) fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// The emulator's variables, for messages about an unreachable endpoint.
    pub(crate) fn emulator_hint(&self) -> Option<&str> {
        self.endpoint_source.as_deref()
    }
}

/// The property names, in declaration order, with their default values.
pub(crate) fn defaults() -> Vec<(String, Json)> {
    let text = serde_json::to_string(&DestinationConfig::default()).unwrap_or_default();
    let mut de = serde_json::Deserializer::from_str(&text);
    de.deserialize_map(OrderedMap).unwrap_or_default()
}

/// Collects a JSON object's entries in their order.
struct OrderedMap;

impl<'de> Visitor<'de> for OrderedMap {
    type Value = Vec<(String, Json)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

/// Merges the layers: `flags` over the environment (read through `env`) over `file` over the
/// defaults.
pub(crate) fn resolve(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[FlagValue],
) -> anyhow::Result<Settings> {
    let defaults = defaults();
    let mut layers: Vec<(String, Json, Source)> = Vec::new();
    if let Some(path) = file {
        layers.extend(read_file(path, &defaults)?);
    }
    layers.extend(env_layer(env)?);
    for f in flags {
        layers.push((f.key.to_owned(), f.value.clone(), Source::Flag(f.flag)));
    }

    let base: serde_json::Map<String, Json> = defaults.iter().cloned().collect();
    let mut merged = base.clone();
    let mut sources = BTreeMap::new();
    for (key, value, source) in &layers {
        merged.insert(key.clone(), value.clone());
        sources.insert(key.clone(), source.clone());
    }
    let config: DestinationConfig = match serde_json::from_value(Json::Object(merged)) {
        Ok(c) => c,
        Err(e) => {
            // Name the property (and where it came from) that does not parse.
            for (key, value, source) in layers.iter().rev() {
                let mut one = base.clone();
                one.insert(key.clone(), value.clone());
                if let Err(e) = serde_json::from_value::<DestinationConfig>(Json::Object(one)) {
                    bail!("{key} = {value} ({source}): {e}");
                }
            }
            bail!("invalid configuration: {e}");
        }
    };
    let (endpoints, endpoint_source) = endpoints(env);
    Ok(Settings { config, sources, endpoints, endpoint_source })
}

/// Endpoints from the emulator variables (either alone serves both APIs), else Google's.
fn endpoints(env: &dyn Fn(&str) -> Option<String>) -> (Endpoints, Option<String>) {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    match (get(ENV_EMULATOR), get(ENV_STORAGE_EMULATOR)) {
        (None, None) => (Endpoints::google(), None),
        (Some(r), Some(g)) => (Endpoints::emulator(&r, &g), Some(format!("{ENV_EMULATOR}, {ENV_STORAGE_EMULATOR}"))),
        (Some(one), None) => (Endpoints::emulator(&one, &one), Some(ENV_EMULATOR.to_owned())),
        (None, Some(one)) => (Endpoints::emulator(&one, &one), Some(ENV_STORAGE_EMULATOR.to_owned())),
    }
}

fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Vec<(String, Json, Source)>> {
    let get = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    if let Some(v) = get(ENV_PROJECT) {
        out.push(("project_id".into(), Json::String(v), Source::Env(ENV_PROJECT)));
    }
    if let Some(v) = get(ENV_DATASET) {
        out.push(("dataset_id".into(), Json::String(v), Source::Env(ENV_DATASET)));
    }
    if let Some(v) = get(ENV_CREDENTIALS) {
        out.push(("credentials_path".into(), Json::String(v), Source::Env(ENV_CREDENTIALS)));
    }
    if let Some(v) = get(ENV_AUTO_TABLES) {
        let on = match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("{ENV_AUTO_TABLES}={v}: expected true or false"),
        };
        let create = if on { "CREATE_IF_NEEDED" } else { "CREATE_NEVER" };
        out.push(("create_disposition".into(), Json::String(create.into()), Source::Env(ENV_AUTO_TABLES)));
        out.push(("auto_detect_schema".into(), Json::Bool(on), Source::Env(ENV_AUTO_TABLES)));
    }
    Ok(out)
}

fn read_file(path: &Path, defaults: &[(String, Json)]) -> anyhow::Result<Vec<(String, Json, Source)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| format!(" at line {}", line_of(&text, s.start))).unwrap_or_default();
        // `toml` leaves some messages empty (a lone `\r`).
        let message = Some(e.message().trim()).filter(|m| !m.is_empty()).unwrap_or("not valid TOML");
        anyhow!("{}{at}: {message}", path.display())
    })?;
    let keys: Vec<&str> = defaults.iter().map(|(k, _)| k.as_str()).collect();
    let mut out = Vec::new();
    for (key, value) in table {
        if !keys.contains(&key.as_str()) {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(key.as_str()))
                .map(|i| format!(" (line {})", i + 1))
                .unwrap_or_default();
            bail!("{}: unknown key `{key}`{line}; {}", path.display(), suggestion(&key, &keys));
        }
        let json = serde_json::to_value(&value).map_err(|e| anyhow!("{}: `{key}`: {e}", path.display()))?;
        out.push((key, json, Source::File(path.to_path_buf())));
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// `did you mean `batch_size`?` when a valid key is close, else the list of valid keys.
pub(crate) fn suggestion(key: &str, valid: &[&str]) -> String {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let best = valid.iter().map(|v| (edit_distance(&lower, v), *v)).min_by_key(|(d, _)| *d);
    match best {
        Some((d, v)) if d <= (v.len() / 2).max(2) => format!("did you mean `{v}`?"),
        _ => format!("valid keys: {}", valid.join(", ")),
    }
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bqsink-cli-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn defaults_keep_declaration_order() {
        let keys: Vec<String> = defaults().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.first().map(String::as_str), Some("project_id"));
        assert!(keys.iter().any(|k| k == "batch_size"));
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let file = tmp("layers.toml", "project_id = \"file-project\"\ndataset_id = \"file_ds\"\nbatch_size = 42\n");
        let env = |k: &str| match k {
            ENV_DATASET => Some("env_ds".to_owned()),
            ENV_PROJECT => Some("env-project".to_owned()),
            _ => None,
        };
        let flags = [FlagValue::new("project_id", "--project", "flag-project")];
        let s = resolve(Some(&file), &env, &flags).expect("resolves");
        assert_eq!(s.config.project_id, "flag-project");
        assert_eq!(s.config.dataset_id, "env_ds");
        assert_eq!(s.config.batch_size, 42);
        assert_eq!(s.config.worker_count, bqsink::DestinationConfig::default().worker_count);
        assert_eq!(s.source("project_id"), Source::Flag("--project"));
        assert_eq!(s.source("dataset_id"), Source::Env(ENV_DATASET));
        assert_eq!(s.source("batch_size"), Source::File(file.clone()));
        assert_eq!(s.source("worker_count"), Source::Default);
    }

    #[test]
    fn an_unknown_key_names_the_closest_one() {
        let file = tmp("typo.toml", "project_id = \"p-1\"\nbatch_sise = 5\n");
        let err = resolve(Some(&file), &no_env, &[]).expect_err("unknown key").to_string();
        assert!(err.contains("unknown key `batch_sise` (line 2); did you mean `batch_size`?"), "{err}");
        let file = tmp("far.toml", "zzzzzzzzzzzz = 1\n");
        let err = resolve(Some(&file), &no_env, &[]).expect_err("unknown key").to_string();
        assert!(err.contains("valid keys: project_id, dataset_id"), "{err}");
    }

    #[test]
    fn the_resilience_properties_come_from_the_file() {
        let file = tmp(
            "resilience.toml",
            "retry_max_attempts = 3\nretry_time_limit_ms = 20000\nrequest_timeout_ms = 2500\n\
             max_request_bytes = 20000000\nmax_inflight_bytes = 40000000\nbreaker_when_open = \"fail_fast\"\n\
             breaker_cool_down_ms = 500\nrate_limit_rows_per_second = 10000\ntable_rate_limit_bytes_per_second = 5000000\n",
        );
        let flags = [FlagValue::new("request_timeout_ms", "--request-timeout", 750)];
        let s = resolve(Some(&file), &no_env, &flags).expect("resolves");
        let c = &s.config;
        assert_eq!((c.retry_max_attempts, c.retry_time_limit_ms, c.request_timeout_ms), (3, 20_000, 750));
        assert_eq!((c.max_request_bytes, c.max_inflight_bytes), (20_000_000, 40_000_000));
        assert_eq!(c.breaker_when_open, bqsink::BreakerWhenOpen::FailFast);
        assert_eq!(c.breaker_cool_down_ms, 500);
        assert_eq!((c.rate_limit_rows_per_second, c.table_rate_limit_bytes_per_second), (10_000, 5_000_000));
        assert_eq!(c.retry_max_backoff_ms, bqsink::DestinationConfig::default().retry_max_backoff_ms);
        assert_eq!(s.source("retry_time_limit_ms"), Source::File(file.clone()));
        assert_eq!(s.source("request_timeout_ms"), Source::Flag("--request-timeout"));

        let file =
            tmp("too-large.toml", "project_id = \"p-123456\"\ndataset_id = \"d\"\nmax_request_bytes = 30000000\n");
        let s = resolve(Some(&file), &no_env, &[]).expect("parses");
        let e = s.config.validate().expect_err("over 20 MB");
        assert_eq!(e.key, "max_request_bytes");
        let file = tmp("zero.toml", "project_id = \"p-123456\"\ndataset_id = \"d\"\nretry_max_attempts = 0\n");
        let e = resolve(Some(&file), &no_env, &[]).expect("parses").config.validate().expect_err("zero attempts");
        assert_eq!(e.key, "retry_max_attempts");
    }

    #[test]
    fn a_toml_error_without_a_message_still_says_what() {
        // Found by fuzzing: `toml` reports a lone `\r` with an empty message.
        let file = tmp("lone-cr.toml", "project_id = \"p\"\n\r\0\n");
        let err = resolve(Some(&file), &no_env, &[]).expect_err("not TOML").to_string();
        assert!(err.ends_with("at line 2: not valid TOML"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_key_and_source() {
        let file = tmp("bad.toml", "create_disposition = \"CREATE_SOMETIMES\"\n");
        let err = resolve(Some(&file), &no_env, &[]).expect_err("bad value").to_string();
        assert!(err.starts_with("create_disposition = \"CREATE_SOMETIMES\" (file "), "{err}");
        assert!(err.contains("CREATE_NEVER"), "{err}");
    }

    #[test]
    fn auto_table_management_sets_the_create_disposition() {
        let env = |k: &str| (k == ENV_AUTO_TABLES).then(|| "false".to_owned());
        let s = resolve(None, &env, &[]).expect("resolves");
        assert_eq!(s.config.create_disposition, bqsink::CreateDisposition::CreateNever);
        assert!(!s.config.auto_detect_schema);
        let env = |k: &str| (k == ENV_AUTO_TABLES).then(|| "perhaps".to_owned());
        assert!(resolve(None, &env, &[]).is_err());
    }

    #[test]
    fn emulator_variables_choose_the_endpoints() {
        let env = |k: &str| (k == ENV_EMULATOR).then(|| "127.0.0.1:9050".to_owned());
        let s = resolve(None, &env, &[]).expect("resolves");
        assert!(s.endpoints.emulator);
        assert_eq!(s.endpoints.grpc, "http://127.0.0.1:9050");
        assert!(!resolve(None, &no_env, &[]).expect("resolves").endpoints.emulator);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("batch_sise", "batch_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
