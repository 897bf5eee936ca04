//! Typed settings from environment variables, declared once with clap.
//!
//! Every variable is one clap argument, `#[arg(long, env = "NAME", ...)]`, that holds its
//! name, default, value parser (and with it the range) and meaning (the doc comment). From that
//! one declaration come the parsing, `--help` ([`help_text`]) and the documentation tables
//! ([`variables`]).
//!
//! Values come from environment variables only, never from flags: [`parse_vars`] maps each
//! `NAME=value` pair to the argument whose `env` is `NAME` (through the command's metadata) and
//! lets clap parse the argument vector made of them. The binaries pass their process environment
//! ([`process_vars`]), tests pass explicit pairs and never touch the process environment; both
//! go through the same code. Blank values count as unset.
//!
//! A variable whose default is not one value (it depends on another setting or on the machine)
//! ends its meaning with that default in words, the way `--help` shows defaults:
//! `... [default: the host name]`.
//!
//! clap parses each value on its own (numbers and their ranges, addresses); the settings types
//! then check what involves several variables or files. Either way a bad value stops start-up
//! with a [`ConfigError`] that names the variable, the value and what is wrong with it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Arg, Command, FromArgMatches};

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

/// clap's value parser for a secret argument: any value, kept as a [`Secret`].
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

// ---- parsing variables through clap ---------------------------------------------------------

/// The variable an argument is read from.
fn variable_of(arg: &Arg) -> Option<&str> {
    arg.get_env().and_then(OsStr::to_str)
}

/// A `(variable, value)` pair: a tuple of anything string-like, or a reference to one.
pub trait VarPair {
    fn name(&self) -> &str;
    fn value(&self) -> &str;
}

impl<K: AsRef<str>, V: AsRef<str>> VarPair for (K, V) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }

    fn value(&self) -> &str {
        self.1.as_ref()
    }
}

impl<T: VarPair + ?Sized> VarPair for &T {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn value(&self) -> &str {
        (**self).value()
    }
}

/// Parse the variables of `cmd` (every argument names its variable with `env`) from `pairs`.
///
/// Pairs naming no argument of `cmd` are ignored; blank values count as unset; the last pair of
/// a name wins. clap's own reading of the process environment is switched off: only `pairs`
/// count.
pub fn parse_vars<A: FromArgMatches>(
    cmd: &Command,
    pairs: impl IntoIterator<Item = impl VarPair>,
) -> Result<A, ConfigError> {
    let longs: BTreeMap<&str, &str> = cmd
        .get_arguments()
        .filter_map(|a| Some((variable_of(a)?, a.get_long()?)))
        .collect();
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for pair in pairs {
        let Some((&name, _)) = longs.get_key_value(pair.name()) else {
            continue;
        };
        match pair.value().trim() {
            "" => values.remove(name),
            v => values.insert(name, v.to_owned()),
        };
    }
    let mut argv = vec![cmd.get_name().to_owned()];
    argv.extend(
        values
            .iter()
            .map(|(name, value)| format!("--{}={value}", longs[name])),
    );
    let parser = cmd.clone().mut_args(|a| a.env(None));
    let matches = parser
        .try_get_matches_from(argv)
        .map_err(|e| config_error(cmd, &e))?;
    A::from_arg_matches(&matches).map_err(|e| config_error(cmd, &e))
}

/// A clap error as a [`ConfigError`] naming the variable (not the internal `--flag`).
fn config_error(cmd: &Command, e: &clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(s)) => s.join(", "),
        _ => String::new(),
    };
    // "--http-addr <HTTP_ADDR>" or "--http-addr=<HTTP_ADDR>"
    let flag = context(ContextKind::InvalidArg);
    let long = flag
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let variable = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(variable_of)
        .unwrap_or("(settings)");
    let reason = match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => e
            .kind()
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string()),
    };
    ConfigError::new(variable, &context(ContextKind::InvalidValue), reason)
}

/// No variables at all (every setting at its default).
pub const NO_VARS: [(&str, &str); 0] = [];

/// The process environment, for [`parse_vars`] (values that are not UTF-8 are read lossily).
pub fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Parse a group of variables on its own (`A` is a `#[derive(clap::Args)]` type).
pub fn args_from_pairs<A: clap::Args>(
    pairs: impl IntoIterator<Item = impl VarPair>,
) -> Result<A, ConfigError> {
    parse_vars(&A::augment_args(Command::new("settings")), pairs)
}

/// Set the defaults that differ from service to service (`(variable, default)`), on arguments
/// that are declared once for all of them (the consumer group, the key prefix, the address).
///
/// # Panics
///
/// If a variable is not an argument of `cmd` (a mistake in the code, found by any test).
pub fn with_defaults(cmd: Command, defaults: &[(&str, &'static str)]) -> Command {
    for (var, _) in defaults {
        assert!(
            cmd.get_arguments().any(|a| variable_of(a) == Some(*var)),
            "{var} is not a setting of {}",
            cmd.get_name()
        );
    }
    cmd.mut_args(|a| {
        match defaults
            .iter()
            .find(|(var, _)| variable_of(&a) == Some(*var))
        {
            Some((_, value)) => a.default_value(*value).required(false),
            None => a,
        }
    })
}

// ---- value parsers ---------------------------------------------------------------------------

/// An integer within `min..=max` (a value parser: `value_parser = int_in(1, 1000)`).
pub fn int_in<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    move |raw: &str| {
        let v: T = raw.parse().map_err(|e: T::Err| e.to_string())?;
        if v < min || v > max {
            return Err(format!("must be between {min} and {max}"));
        }
        Ok(v)
    }
}

/// A duration given as a whole number of seconds: 1 up to ten years.
pub const SECS: (u64, u64) = (1, 10 * 365 * 24 * 3600);

/// A duration given as a whole number of milliseconds: 1 up to a day.
pub const MILLIS: (u64, u64) = (1, 24 * 3600 * 1000);

/// A socket address such as `0.0.0.0:5000` (a value parser).
pub fn socket_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| "expected an address like 0.0.0.0:5000".to_owned())
}

// ---- checks the settings types share ---------------------------------------------------------

/// A path to a file that must exist and be readable (certificates, keys, properties).
pub fn readable_file(name: &str, raw: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match std::fs::File::open(raw) {
        Ok(_) => Ok(Some(PathBuf::from(raw))),
        Err(e) => Err(ConfigError::new(
            name,
            raw,
            format!("cannot read the file: {e}"),
        )),
    }
}

/// A secret (token, password) from `NAME` (`value`), or read from the file named by `NAME_FILE`
/// (`file`; the Docker and Kubernetes secrets convention; trailing line breaks are trimmed).
/// Setting both, an unreadable file or an empty one is an error naming `NAME_FILE`; the secret
/// itself never appears in an error.
pub fn secret(
    name: &str,
    value: Option<Secret>,
    file: Option<&str>,
) -> Result<Option<Secret>, ConfigError> {
    let file_var = format!("{name}_FILE");
    match (value, file) {
        (None, None) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
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
            Ok(Some(Secret::new(value)))
        }
    }
}

// ---- help and documentation ------------------------------------------------------------------

/// One variable as `--help` and `docs/configuration.md` show it, read from clap's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// The default value, or the default in words.
    pub default: String,
    pub meaning: String,
}

/// Every variable of `cmd`, in declaration order. Hidden arguments (the `<NAME>_FILE` variants
/// of secrets, described with their secret) are left out.
pub fn variables(cmd: &Command) -> Vec<Variable> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let name = variable_of(a)?.to_owned();
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            let defaults: Vec<_> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let (meaning, default) = match help.strip_suffix(']').and_then(|h| {
                h.rsplit_once(" [default: ")
                    .map(|(m, d)| (m.to_owned(), d.to_owned()))
            }) {
                Some((meaning, words)) if defaults.is_empty() => (meaning, words),
                _ if !defaults.is_empty() => (help, defaults.join(",")),
                _ => (help, "(unset)".to_owned()),
            };
            Some(Variable {
                name,
                default,
                meaning,
            })
        })
        .collect()
}

/// Text for `--help`: the binary's purpose and every variable with its meaning and default.
pub fn help_text(cmd: &Command) -> String {
    let binary = cmd.get_name();
    let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    let vars = variables(cmd);
    let width = vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{binary}: {about}\n\nUsage: {binary} [--help]\n\nConfiguration is read from environment variables:\n\n"
    );
    for v in vars {
        out.push_str(&format!(
            "  {:width$}  {}\n  {:width$}  (default: {})\n",
            v.name,
            v.meaning,
            "",
            v.default,
            width = width
        ));
    }
    out
}

// ---- the settings every service has -----------------------------------------------------------

/// `HTTP_ADDR`, `LOG_FORMAT`, `HTTP_TLS_CERT_FILE`, `HTTP_TLS_KEY_FILE`. `HTTP_ADDR`'s default
/// is the service's ([`with_defaults`]).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// address the HTTP server (health, metrics, API) listens on
    #[arg(long, env = "HTTP_ADDR", value_parser = socket_addr)]
    pub http_addr: SocketAddr,
    /// log output format: pretty or json (filter with RUST_LOG) [default: pretty on a terminal,
    /// json otherwise]
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// serve HTTPS with this PEM certificate chain (with HTTP_TLS_KEY_FILE) [default: (unset:
    /// plain HTTP)]
    #[arg(long, env = "HTTP_TLS_CERT_FILE")]
    pub http_tls_cert_file: Option<String>,
    /// the PEM private key of HTTP_TLS_CERT_FILE [default: (unset: plain HTTP)]
    #[arg(long, env = "HTTP_TLS_KEY_FILE")]
    pub http_tls_key_file: Option<String>,
    /// export spans over OTLP/HTTP (protobuf) to this collector base URL (to <it>/v1/traces);
    /// batching follows the standard OTEL_BSP_* variables [default: (unset: nothing exported)]
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = otlp_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// service.name of the exported spans [default: the binary's name]
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// encoding of the exported spans: http/protobuf or http/json
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "http/protobuf",
        value_parser = ["http/protobuf", "http/json"])]
    pub otel_exporter_otlp_protocol: String,
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: an http:// or https:// URL.
fn otlp_endpoint(raw: &str) -> Result<String, String> {
    let url = raw.trim();
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(url.to_owned())
    } else {
        Err("expected an http:// or https:// URL, e.g. http://otel-collector:4318".to_owned())
    }
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
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: export spans there; nothing exported when unset.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the exported spans' `service.name` (default: the binary's name).
    pub otel_service_name: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/json` exports JSON, anything else protobuf.
    pub otlp_json: bool,
}

/// The certificate chain and private key (PEM files) of the service's HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CommonSettings {
    pub fn from_args(args: &CommonArgs) -> Result<Self, ConfigError> {
        let cert = readable_file("HTTP_TLS_CERT_FILE", args.http_tls_cert_file.as_deref())?;
        let key = readable_file("HTTP_TLS_KEY_FILE", args.http_tls_key_file.as_deref())?;
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
            http_addr: args.http_addr,
            log_format: args
                .log_format
                .unwrap_or_else(crate::telemetry::LogFormat::for_stderr),
            http_tls,
            otlp_endpoint: args.otel_exporter_otlp_endpoint.clone(),
            otlp_json: args.otel_exporter_otlp_protocol == "http/json",
            otel_service_name: args
                .otel_service_name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        })
    }
}

/// `OPERATOR_TOKEN` (or `OPERATOR_TOKEN_FILE`): the bearer token of a service's operator
/// endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// bearer token of the operator endpoints; or OPERATOR_TOKEN_FILE: a file holding it
    /// [default: (unset: the operator endpoints answer 503)]
    #[arg(long, env = "OPERATOR_TOKEN")]
    pub operator_token: Option<Secret>,
    #[arg(long, env = "OPERATOR_TOKEN_FILE", hide = true)]
    pub operator_token_file: Option<String>,
}

impl OperatorArgs {
    /// The token, from the variable or the file; `None` when neither is set.
    pub fn token(&self) -> Result<Option<Secret>, ConfigError> {
        secret(
            "OPERATOR_TOKEN",
            self.operator_token.clone(),
            self.operator_token_file.as_deref(),
        )
    }
}

/// A service's settings: a clap `Args` type holding its variables, and the typed, checked
/// settings made from them.
pub trait ServiceSettings: Sized {
    /// The variables (a `#[derive(clap::Parser)]` type naming the binary and its purpose).
    type Args: clap::CommandFactory + FromArgMatches;

    /// This service's defaults of the variables declared once for every service
    /// (`KAFKA_CONSUMER_GROUP`, `REDIS_KEY_PREFIX`, `HTTP_ADDR`): `(variable, default)`.
    const DEFAULTS: &'static [(&'static str, &'static str)];

    /// The command: [`Self::Args`] with [`Self::DEFAULTS`] ([`with_defaults`]).
    fn command() -> Command {
        with_defaults(
            <Self::Args as clap::CommandFactory>::command(),
            Self::DEFAULTS,
        )
    }

    /// Check the parsed variables and build the settings.
    fn from_args(args: Self::Args) -> Result<Self, ConfigError>;

    /// The settings every service has (address, log format, TLS).
    fn common(&self) -> &CommonSettings;

    /// The settings from explicit `(variable, value)` pairs (tests).
    fn from_pairs(pairs: impl IntoIterator<Item = impl VarPair>) -> Result<Self, ConfigError> {
        Self::from_args(parse_vars(&Self::command(), pairs)?)
    }

    /// The settings when no variable is set.
    fn from_defaults() -> Result<Self, ConfigError> {
        Self::from_pairs(NO_VARS)
    }

    /// The settings from the process environment.
    fn from_process() -> Result<Self, ConfigError> {
        Self::from_pairs(process_vars())
    }

    /// Every variable, for `--help` and the documentation.
    fn variables() -> Vec<Variable> {
        variables(&Self::command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::LogFormat;

    /// Variables of the kinds the services have.
    #[derive(Debug, clap::Parser)]
    #[command(name = "svc", about = "does things")]
    struct TestArgs {
        #[arg(long, env = "A", default_value = "x")]
        a: String,
        #[arg(long, env = "B", default_value_t = 7)]
        b: u32,
        #[arg(long, env = "PHASE_TIMEOUT_SECS", default_value_t = 10, value_parser = int_in(SECS.0, SECS.1))]
        phase_timeout_secs: u64,
        #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3, value_parser = int_in(1, 1000))]
        topic_partitions: i32,
        #[arg(long, env = "OPERATOR_TOKEN")]
        operator_token: Option<Secret>,
        #[arg(long, env = "OPERATOR_TOKEN_FILE", hide = true)]
        operator_token_file: Option<String>,
        #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
        kafka_ssl_ca_location: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    }

    fn command() -> Command {
        with_defaults(
            <TestArgs as clap::CommandFactory>::command(),
            &[("HTTP_ADDR", "0.0.0.0:5000")],
        )
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<TestArgs, ConfigError> {
        parse_vars(&command(), pairs)
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let args = parse(&[("A", "  ")]).unwrap();
        assert_eq!(args.a, "x");
        assert_eq!(args.b, 7);
    }

    #[test]
    fn values_are_trimmed_and_the_last_pair_wins() {
        let args = parse(&[("B", " 8 "), ("B", "9"), ("UNKNOWN", "?")]).unwrap();
        assert_eq!(args.b, 9);
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = parse(&[("PHASE_TIMEOUT_SECS", "soon")]).unwrap_err();
        assert_eq!(err.variable, "PHASE_TIMEOUT_SECS");
        assert!(
            err.to_string().contains("PHASE_TIMEOUT_SECS=\"soon\""),
            "{err}"
        );
        assert!(err.reason.contains("invalid digit"), "{err}");
        assert!(!err.to_string().contains("--"), "no flag named: {err}");
    }

    #[test]
    fn ranges_are_enforced() {
        let err = parse(&[("TOPIC_PARTITIONS", "0")]).unwrap_err();
        assert!(err.reason.contains("between 1 and 1000"), "{err}");
        assert_eq!(err.variable, "TOPIC_PARTITIONS");
        // A value that looks like a flag is a value.
        let err = parse(&[("TOPIC_PARTITIONS", "-1")]).unwrap_err();
        assert_eq!(err.variable, "TOPIC_PARTITIONS");
    }

    #[test]
    fn socket_addresses_are_checked() {
        let err = parse(&[("HTTP_ADDR", "localhost")]).unwrap_err();
        assert_eq!(err.variable, "HTTP_ADDR");
        let ok = parse(&[]).unwrap();
        assert_eq!(ok.common.http_addr.port(), 5000);
    }

    #[test]
    fn log_format_parses_and_names_the_variable() {
        let args = parse(&[("LOG_FORMAT", "json")]).unwrap();
        let common = CommonSettings::from_args(&args.common).unwrap();
        assert_eq!(common.log_format, LogFormat::Json);
        let err = parse(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.variable, "LOG_FORMAT");
    }

    fn token(pairs: &[(&str, &str)]) -> Result<Option<Secret>, ConfigError> {
        let args = parse(pairs)?;
        secret(
            "OPERATOR_TOKEN",
            args.operator_token,
            args.operator_token_file.as_deref(),
        )
    }

    #[test]
    fn secrets_never_print() {
        let s = token(&[("OPERATOR_TOKEN", "hunter2")]).unwrap().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        let args = parse(&[("OPERATOR_TOKEN", "hunter2")]).unwrap();
        assert!(!format!("{args:?}").contains("hunter2"));
    }

    fn temp_file(name: &str, content: &str) -> PathBuf {
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
        let s = token(&[("OPERATOR_TOKEN_FILE", path.to_str().unwrap())])
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cret token");
        let crlf = temp_file("crlf", "abc\r\n");
        assert_eq!(
            secret("X", None, crlf.to_str()).unwrap().unwrap().expose(),
            "abc"
        );
        assert_eq!(secret("X", None, None).unwrap(), None);
    }

    #[test]
    fn a_secret_set_twice_or_unreadable_is_an_error_naming_the_file_variable() {
        let path = temp_file("both", "from-file");
        let err = secret(
            "KAFKA_SASL_PASSWORD",
            Some(Secret::new("from-env")),
            path.to_str(),
        )
        .unwrap_err();
        assert_eq!(err.variable, "KAFKA_SASL_PASSWORD_FILE");
        assert!(!err.to_string().contains("from-env") && !err.to_string().contains("from-file"));

        let err = secret("KAFKA_SASL_PASSWORD", None, Some("/nonexistent/secret")).unwrap_err();
        assert_eq!(err.variable, "KAFKA_SASL_PASSWORD_FILE");
        assert!(err.reason.contains("cannot read"), "{err}");

        let empty = temp_file("empty", "\n");
        assert!(secret("T", None, empty.to_str())
            .unwrap_err()
            .reason
            .contains("empty"));
    }

    #[test]
    fn files_must_exist() {
        let args = parse(&[("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")]).unwrap();
        let err = readable_file(
            "KAFKA_SSL_CA_LOCATION",
            args.kafka_ssl_ca_location.as_deref(),
        )
        .unwrap_err();
        assert_eq!(err.variable, "KAFKA_SSL_CA_LOCATION");
        assert_eq!(readable_file("KAFKA_SSL_CA_LOCATION", None).unwrap(), None);
    }

    #[test]
    fn the_process_environment_is_not_read_by_clap() {
        // Whatever the test process has in A, only the pairs count.
        let cmd = command().mut_arg("a", |a| a.env("PATH"));
        let args: TestArgs = parse_vars(&cmd, [("B", "1")]).unwrap();
        assert_eq!(args.a, "x");
    }

    #[test]
    fn help_lists_every_setting() {
        let text = help_text(&command());
        assert!(text.contains("HTTP_ADDR") && text.contains("LOG_FORMAT"));
        assert!(text.contains("0.0.0.0:5000"));
        assert!(text.starts_with("svc: does things"), "{text}");
        assert!(!text.contains("OPERATOR_TOKEN_FILE"), "{text}");
    }

    #[test]
    fn variables_carry_default_and_meaning() {
        let vars = variables(&command());
        let get = |n: &str| vars.iter().find(|v| v.name == n).unwrap().clone();
        assert_eq!(get("B").default, "7");
        assert_eq!(get("HTTP_ADDR").default, "0.0.0.0:5000");
        let log = get("LOG_FORMAT");
        assert_eq!(log.default, "pretty on a terminal, json otherwise");
        assert_eq!(
            log.meaning,
            "log output format: pretty or json (filter with RUST_LOG)"
        );
        assert_eq!(get("A").default, "x");
        assert_eq!(get("OPERATOR_TOKEN").default, "(unset)");
    }
}
