//! Redis settings from the environment.

use huleedu_service::settings::{ConfigError, Env, SettingDoc};

/// Where Redis is and which key prefix this deployment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// `REDIS_KEY_PREFIX`: lets several deployments or test runs share one Redis.
    pub key_prefix: String,
}

impl RedisSettings {
    pub fn from_env(env: &Env, default_prefix: &str) -> Result<Self, ConfigError> {
        let url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            return Err(ConfigError::new(
                "REDIS_URL",
                &url,
                "expected redis://host:port[/db] (or rediss://, unix://)",
            ));
        }
        if let Err(e) = redis::Client::open(url.as_str()) {
            return Err(ConfigError::new("REDIS_URL", &url, e.to_string()));
        }
        let key_prefix = env.string("REDIS_KEY_PREFIX", default_prefix);
        if key_prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                &key_prefix,
                "must not contain braces or spaces (it becomes part of a hash tag)",
            ));
        }
        Ok(Self { url, key_prefix })
    }

    /// Table rows for `--help` and the docs.
    pub fn docs(default_prefix: &'static str) -> Vec<SettingDoc> {
        vec![
            SettingDoc {
                name: "REDIS_URL",
                default: "redis://127.0.0.1:6379",
                meaning: "Redis holding state, dedup markers and the outbox",
            },
            SettingDoc {
                name: "REDIS_KEY_PREFIX",
                default: default_prefix,
                meaning: "prefix of every key, so deployments or test runs can share a Redis",
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_and_prefix_name_the_variable() {
        let e = RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", "http://x")]), "bos")
            .unwrap_err();
        assert_eq!(e.variable, "REDIS_URL");
        let e = RedisSettings::from_env(&Env::from_pairs([("REDIS_KEY_PREFIX", "a{b}")]), "bos")
            .unwrap_err();
        assert_eq!(e.variable, "REDIS_KEY_PREFIX");
        let ok = RedisSettings::from_env(&Env::default(), "bcs").unwrap();
        assert_eq!(ok.key_prefix, "bcs");
    }
}
