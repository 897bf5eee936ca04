//! Typed settings from environment variables.
//!
//! Every service reads its configuration through an [`Env`] snapshot: defaults first, then the
//! environment, then validation. A bad value stops start-up with a [`ConfigError`] that names the
//! variable, the value and what is wrong with it. Each service describes its variables once in a
//! table of [`SettingDoc`] rows, from which `--help` and the documentation check are derived.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be used. Start-up stops with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub variable: String,
    /// The value found (secrets are never shown).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub fn new(variable: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of the environment variables a service reads.
///
/// Built from the process environment in `main`, or from explicit pairs in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment made of the given pairs only (for tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of a variable, if set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A string setting with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// A non-empty string setting without a default.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// A secret (token, password), never printed by `Debug`: from `NAME`, or read from the file
    /// named by `NAME_FILE` (the Docker and Kubernetes secrets convention; trailing line breaks
    /// are trimmed). Setting both, an unreadable file or an empty one is an error naming
    /// `NAME_FILE`; the secret itself never appears in an error.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (None, None) => Ok(None),
            (Some(v), None) => Ok(Some(Secret(v.to_owned()))),
            (Some(_), Some(path)) => Err(ConfigError::new(
                &file_var,
                path,
                format!("{name} is set too: set the secret one way, not both"),
            )),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(&file_var, path, format!("cannot read the file: {e}"))
                })?;
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(ConfigError::new(&file_var, path, "the file is empty"));
                }
                Ok(Some(Secret(value.to_owned())))
            }
        }
    }

    /// A path to a file that must exist and be readable (certificates, keys, properties).
    pub fn file(&self, name: &str) -> Result<Option<std::path::PathBuf>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match std::fs::File::open(raw) {
            Ok(_) => Ok(Some(std::path::PathBuf::from(raw))),
            Err(e) => Err(ConfigError::new(
                name,
                raw,
                format!("cannot read the file: {e}"),
            )),
        }
    }

    /// A value parsed with `FromStr`, or the default when unset.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| ConfigError::new(name, raw, e.to_string())),
        }
    }

    /// An integer within `min..=max`.
    pub fn int_in<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let v = self.parse(name, default)?;
        if v < min || v > max {
            return Err(ConfigError::new(
                name,
                &v.to_string(),
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(v)
    }

    /// A duration given as a whole number of seconds (at least 1).
    pub fn secs(&self, name: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.int_in(name, default_secs, 1, 10 * 365 * 24 * 3600)
            .map(Duration::from_secs)
    }

    /// A duration given as a whole number of milliseconds (at least 1).
    pub fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.int_in(name, default_ms, 1, 24 * 3600 * 1000)
            .map(Duration::from_millis)
    }

    /// A socket address such as `0.0.0.0:5000`.
    pub fn socket_addr(&self, name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.string(name, default);
        raw.parse()
            .map_err(|_| ConfigError::new(name, &raw, "expected an address like 0.0.0.0:5000"))
    }
}

/// A secret string (token, password). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// One row of a service's settings table: `--help` and the docs are made from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Settings every service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonSettings {
    /// `HTTP_ADDR`: where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// `LOG_FORMAT`: `pretty` or `json`.
    pub log_format: crate::telemetry::LogFormat,
    /// `HTTP_TLS_CERT_FILE` and `HTTP_TLS_KEY_FILE`: serve HTTPS with this certificate chain
    /// and key (PEM); plain HTTP when unset.
    pub http_tls: Option<HttpTlsFiles>,
}

/// The certificate chain and private key (PEM files) of the service's HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl CommonSettings {
    pub fn from_env(env: &Env, default_http_addr: &str) -> Result<Self, ConfigError> {
        let cert = env.file("HTTP_TLS_CERT_FILE")?;
        let key = env.file("HTTP_TLS_KEY_FILE")?;
        let http_tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(HttpTlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "HTTP_TLS_KEY_FILE",
                    "",
                    "required with HTTP_TLS_CERT_FILE (the certificate's private key)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "HTTP_TLS_CERT_FILE",
                    "",
                    "required with HTTP_TLS_KEY_FILE (the key's certificate chain)",
                ))
            }
        };
        Ok(Self {
            http_addr: env.socket_addr("HTTP_ADDR", default_http_addr)?,
            log_format: crate::telemetry::LogFormat::from_env(env)?,
            http_tls,
        })
    }

    /// Table rows for the common settings.
    pub fn docs(default_http_addr: &'static str) -> [SettingDoc; 4] {
        [
            SettingDoc {
                name: "HTTP_ADDR",
                default: default_http_addr,
                meaning: "address the HTTP server (health, metrics, API) listens on",
            },
            SettingDoc {
                name: "LOG_FORMAT",
                default: "pretty on a terminal, json otherwise",
                meaning: "log output format: pretty or json (filter with RUST_LOG)",
            },
            SettingDoc {
                name: "HTTP_TLS_CERT_FILE",
                default: "(unset: plain HTTP)",
                meaning: "serve HTTPS with this PEM certificate chain (with HTTP_TLS_KEY_FILE)",
            },
            SettingDoc {
                name: "HTTP_TLS_KEY_FILE",
                default: "(unset: plain HTTP)",
                meaning: "the PEM private key of HTTP_TLS_CERT_FILE",
            },
        ]
    }
}

/// Text for `--help`: the binary's purpose and its settings table.
pub fn help_text(binary: &str, about: &str, docs: &[SettingDoc]) -> String {
    let width = docs.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{binary}: {about}\n\nUsage: {binary} [--help]\n\nConfiguration is read from environment variables:\n\n"
    );
    for d in docs {
        out.push_str(&format!(
            "  {:width$}  {}\n  {:width$}  (default: {})\n",
            d.name,
            d.meaning,
            "",
            d.default,
            width = width
        ));
    }
    out
}

/// If the process was started with `--help` or `-h`, print the help text and exit.
/// Any other argument is refused, naming it.
pub fn handle_args(binary: &str, about: &str, docs: &[SettingDoc]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help_text(binary, about, docs));
        std::process::exit(0);
    }
    if let Some(other) = args.first() {
        eprintln!("{binary}: unknown argument {other:?}; configuration comes from environment variables, see --help");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let env = Env::from_pairs([("A", "  ")]);
        assert_eq!(env.string("A", "x"), "x");
        assert_eq!(env.parse::<u32>("B", 7).unwrap(), 7);
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let env = Env::from_pairs([("PHASE_TIMEOUT_SECS", "soon")]);
        let err = env.secs("PHASE_TIMEOUT_SECS", 10).unwrap_err();
        assert_eq!(err.variable, "PHASE_TIMEOUT_SECS");
        assert!(
            err.to_string().contains("PHASE_TIMEOUT_SECS=\"soon\""),
            "{err}"
        );
    }

    #[test]
    fn ranges_are_enforced() {
        let env = Env::from_pairs([("TOPIC_PARTITIONS", "0")]);
        let err = env.int_in("TOPIC_PARTITIONS", 3, 1, 1000).unwrap_err();
        assert!(err.reason.contains("between 1 and 1000"), "{err}");
    }

    #[test]
    fn socket_addresses_are_checked() {
        let env = Env::from_pairs([("HTTP_ADDR", "localhost")]);
        let err = env.socket_addr("HTTP_ADDR", "0.0.0.0:1").unwrap_err();
        assert_eq!(err.variable, "HTTP_ADDR");
        let ok = Env::default()
            .socket_addr("HTTP_ADDR", "0.0.0.0:5000")
            .unwrap();
        assert_eq!(ok.port(), 5000);
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_pairs([("OPERATOR_TOKEN", "hunter2")]);
        let s = env.secret("OPERATOR_TOKEN").unwrap().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("huleedu-settings-{}-{}", std::process::id(), name));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn secrets_come_from_files_with_the_line_break_trimmed() {
        let path = temp_file("token", "s3cret token\n");
        let env = Env::from_pairs([("OPERATOR_TOKEN_FILE", path.to_str().unwrap())]);
        let s = env.secret("OPERATOR_TOKEN").unwrap().unwrap();
        assert_eq!(s.expose(), "s3cret token");
        let crlf = temp_file("crlf", "abc\r\n");
        let env = Env::from_pairs([("X_FILE", crlf.to_str().unwrap())]);
        assert_eq!(env.secret("X").unwrap().unwrap().expose(), "abc");
        assert_eq!(Env::default().secret("X").unwrap(), None);
    }

    #[test]
    fn a_secret_set_twice_or_unreadable_is_an_error_naming_the_file_variable() {
        let path = temp_file("both", "from-file");
        let env = Env::from_pairs([
            ("KAFKA_SASL_PASSWORD", "from-env"),
            ("KAFKA_SASL_PASSWORD_FILE", path.to_str().unwrap()),
        ]);
        let err = env.secret("KAFKA_SASL_PASSWORD").unwrap_err();
        assert_eq!(err.variable, "KAFKA_SASL_PASSWORD_FILE");
        assert!(!err.to_string().contains("from-env") && !err.to_string().contains("from-file"));

        let env = Env::from_pairs([("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/secret")]);
        let err = env.secret("KAFKA_SASL_PASSWORD").unwrap_err();
        assert_eq!(err.variable, "KAFKA_SASL_PASSWORD_FILE");
        assert!(err.reason.contains("cannot read"), "{err}");

        let empty = temp_file("empty", "\n");
        let env = Env::from_pairs([("T_FILE", empty.to_str().unwrap())]);
        assert!(env.secret("T").unwrap_err().reason.contains("empty"));
    }

    #[test]
    fn files_must_exist() {
        let env = Env::from_pairs([("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")]);
        let err = env.file("KAFKA_SSL_CA_LOCATION").unwrap_err();
        assert_eq!(err.variable, "KAFKA_SSL_CA_LOCATION");
        assert_eq!(Env::default().file("KAFKA_SSL_CA_LOCATION").unwrap(), None);
    }

    #[test]
    fn help_lists_every_setting() {
        let docs = CommonSettings::docs("0.0.0.0:5000");
        let text = help_text("svc", "does things", &docs);
        assert!(text.contains("HTTP_ADDR") && text.contains("LOG_FORMAT"));
        assert!(text.contains("0.0.0.0:5000"));
    }
}
