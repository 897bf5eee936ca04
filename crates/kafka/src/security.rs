//! How the clients reach a secured broker: TLS, SASL, and a Java-style client properties file.
//!
//! From the environment ([`KafkaSecurityArgs`], checked by [`KafkaSecurity::from_args`]):
//!
//! | variable | librdkafka property |
//! |---|---|
//! | `KAFKA_SECURITY_PROTOCOL` (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`) | `security.protocol` |
//! | `KAFKA_SASL_MECHANISM` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) | `sasl.mechanism` |
//! | `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` (or `KAFKA_SASL_PASSWORD_FILE`) | `sasl.username`, `sasl.password` |
//! | `KAFKA_SSL_CA_LOCATION` (PEM) | `ssl.ca.location` |
//! | `KAFKA_SSL_CERTIFICATE_LOCATION` + `KAFKA_SSL_KEY_LOCATION` (PEM, mutual TLS) | `ssl.certificate.location`, `ssl.key.location` |
//! | `KAFKA_PROPERTIES_FILE` | every `key=value` of the file, as it is |
//!
//! The properties file is the `.properties` file platform teams keep for their Java clients;
//! its keys go to librdkafka unchanged, so it can carry anything librdkafka knows (timeouts,
//! `ssl.endpoint.identification.algorithm`, `client.rack`, ...). Keys that only the Java client
//! knows (`sasl.jaas.config`, `ssl.truststore.*`) are refused with the variable to use instead,
//! keys the services set for their delivery guarantees (`acks`, `group.id`,
//! `enable.auto.commit`, ...) are refused, and a key set both in the file and by a variable
//! is refused: start-up stops with a message naming the variable or the key. Values from the
//! file and passwords never appear in a log line, an error or `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use huleedu_service::settings::{readable_file, secret, ConfigError, Secret};
use rdkafka::ClientConfig;

use crate::settings::KafkaArgs;

/// The security variables (part of [`KafkaArgs`]). Raw values: [`KafkaSecurity::from_args`]
/// checks them together, with the properties file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// plaintext, ssl, sasl_plaintext or sasl_ssl [default: plaintext]
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [default: (unset; required with sasl_*)]
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name [default: (unset; required with sasl_*)]
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password; or KAFKA_SASL_PASSWORD_FILE: a file holding it [default: (unset; required
    /// with sasl_*)]
    #[arg(long, env = "KAFKA_SASL_PASSWORD")]
    pub kafka_sasl_password: Option<Secret>,
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE", hide = true)]
    pub kafka_sasl_password_file: Option<String>,
    /// CA certificate(s) in PEM to verify the broker with (ssl, sasl_ssl) [default: (unset: the
    /// system's trust store)]
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// client certificate in PEM for mutual TLS (with KAFKA_SSL_KEY_LOCATION)
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<String>,
    /// private key in PEM of the client certificate (mutual TLS)
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<String>,
    /// Java-style client .properties file; its keys go to librdkafka as they are
    #[arg(long, env = "KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<String>,
}

/// `KAFKA_SECURITY_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "plaintext" => Some(Self::Plaintext),
            "ssl" => Some(Self::Ssl),
            "sasl_plaintext" => Some(Self::SaslPlaintext),
            "sasl_ssl" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// The connection is encrypted (and the broker's certificate verified).
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// The client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `KAFKA_SASL_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// librdkafka's (and Kafka's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// The `key=value` pairs of `KAFKA_PROPERTIES_FILE`. `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    /// The file they were read from.
    pub path: Option<PathBuf>,
    entries: BTreeMap<String, String>,
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProperties")
            .field("path", &self.path)
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClientProperties {
    /// The value of `key`, if the file sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The keys the file sets.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// How the clients connect: protocol, SASL credentials, TLS files, extra properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// Set when the protocol uses SASL and the credentials come from the environment (they may
    /// also come from the properties file).
    pub sasl: Option<SaslCredentials>,
    /// `KAFKA_SSL_CA_LOCATION`: CA certificate(s) to verify the broker with (PEM); without it,
    /// the system's trust store.
    pub ssl_ca_location: Option<PathBuf>,
    /// `KAFKA_SSL_CERTIFICATE_LOCATION`: client certificate for mutual TLS (PEM).
    pub ssl_certificate_location: Option<PathBuf>,
    /// `KAFKA_SSL_KEY_LOCATION`: the client certificate's private key (PEM).
    pub ssl_key_location: Option<PathBuf>,
    /// `KAFKA_PROPERTIES_FILE`.
    pub properties: ClientProperties,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            sasl: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            properties: ClientProperties::default(),
        }
    }
}

/// Properties the services set themselves for their guarantees; the file may not change them.
const MANAGED_KEYS: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "partitioner",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "group.protocol",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "fetch.wait.max.ms",
    "message.timeout.ms",
];

/// Java-client-only keys, with what to use instead.
const JAVA_ONLY_KEYS: &[(&str, &str)] = &[
    (
        "sasl.jaas.config",
        "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or sasl.username / sasl.password)",
    ),
    (
        "ssl.truststore.location",
        "set KAFKA_SSL_CA_LOCATION to the CA certificate in PEM form",
    ),
    (
        "ssl.truststore.password",
        "set KAFKA_SSL_CA_LOCATION to the CA certificate in PEM form",
    ),
    (
        "ssl.truststore.type",
        "set KAFKA_SSL_CA_LOCATION to the CA certificate in PEM form",
    ),
    (
        "ssl.keystore.type",
        "librdkafka reads PKCS#12 key stores (ssl.keystore.location) or PEM files (KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION)",
    ),
    (
        "key.serializer",
        "the services write JSON bytes themselves; remove it",
    ),
    (
        "value.serializer",
        "the services write JSON bytes themselves; remove it",
    ),
    (
        "key.deserializer",
        "the services read bytes themselves; remove it",
    ),
    (
        "value.deserializer",
        "the services read bytes themselves; remove it",
    ),
];

/// Variables and the librdkafka property each one sets.
const VARIABLE_KEYS: &[(&str, &str)] = &[
    ("KAFKA_BOOTSTRAP_SERVERS", "bootstrap.servers"),
    ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
    ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
    ("KAFKA_SASL_MECHANISM", "sasl.mechanisms"),
    ("KAFKA_SASL_USERNAME", "sasl.username"),
    ("KAFKA_SASL_PASSWORD", "sasl.password"),
    ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
    ("KAFKA_SSL_KEY_LOCATION", "ssl.key.location"),
];

/// Is variable `var` (one of [`VARIABLE_KEYS`]) set?
fn is_set(args: &KafkaArgs, var: &str) -> bool {
    let sec = &args.security;
    match var {
        "KAFKA_BOOTSTRAP_SERVERS" => args.kafka_bootstrap_servers.is_some(),
        "KAFKA_SECURITY_PROTOCOL" => sec.kafka_security_protocol.is_some(),
        "KAFKA_SASL_MECHANISM" => sec.kafka_sasl_mechanism.is_some(),
        "KAFKA_SASL_USERNAME" => sec.kafka_sasl_username.is_some(),
        "KAFKA_SASL_PASSWORD" => sec.kafka_sasl_password.is_some(),
        "KAFKA_SSL_CA_LOCATION" => sec.kafka_ssl_ca_location.is_some(),
        "KAFKA_SSL_CERTIFICATE_LOCATION" => sec.kafka_ssl_certificate_location.is_some(),
        "KAFKA_SSL_KEY_LOCATION" => sec.kafka_ssl_key_location.is_some(),
        _ => false,
    }
}

fn properties_error(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new("KAFKA_PROPERTIES_FILE", path, reason)
}

/// Read and check `KAFKA_PROPERTIES_FILE`.
fn read_properties(args: &KafkaArgs) -> Result<ClientProperties, ConfigError> {
    let sec = &args.security;
    let Some(path) = readable_file(
        "KAFKA_PROPERTIES_FILE",
        sec.kafka_properties_file.as_deref(),
    )?
    else {
        return Ok(ClientProperties::default());
    };
    let shown = path.display().to_string();
    let file = std::fs::File::open(&path)
        .map_err(|e| properties_error(&shown, format!("cannot read the file: {e}")))?;
    let raw = java_properties::read(std::io::BufReader::new(file)).map_err(|e| {
        let line = e
            .line_number()
            .map(|n| format!(" at line {n}"))
            .unwrap_or_default();
        properties_error(&shown, format!("not a properties file{line}"))
    })?;
    let mut entries = BTreeMap::new();
    for (key, value) in raw {
        let key = key.trim().to_owned();
        if let Some((_, instead)) = JAVA_ONLY_KEYS.iter().find(|(k, _)| *k == key) {
            return Err(properties_error(
                &shown,
                format!("{key} is a Java client setting librdkafka does not know: {instead}"),
            ));
        }
        if MANAGED_KEYS.contains(&key.as_str()) {
            return Err(properties_error(
                &shown,
                format!(
                    "{key} is set by the services for their delivery guarantees and may not be \
                     changed (see docs/configuration.md); remove it"
                ),
            ));
        }
        if let Some((var, _)) = VARIABLE_KEYS
            .iter()
            .find(|(var, k)| *k == key && is_set(args, var))
        {
            return Err(properties_error(
                &shown,
                format!("{key} is also set by {var}: set it in one place"),
            ));
        }
        if key == "sasl.password"
            && (sec.kafka_sasl_password_file.is_some() || sec.kafka_sasl_password.is_some())
        {
            return Err(properties_error(
                &shown,
                "sasl.password is also set by KAFKA_SASL_PASSWORD(_FILE): set it in one place",
            ));
        }
        // librdkafka checks names and values; its message may quote the value, so only the
        // key and a value-free reason are shown.
        let mut probe = ClientConfig::new();
        probe.set(&key, &value);
        if let Err(e) = probe.create_native_config() {
            let reason = e.to_string().replace(&value, "***");
            return Err(properties_error(
                &shown,
                format!("librdkafka refuses {key}: {reason}"),
            ));
        }
        entries.insert(key, value);
    }
    Ok(ClientProperties {
        path: Some(path),
        entries,
    })
}

impl KafkaSecurity {
    /// Check the security variables (see the module documentation); `args` is every Kafka
    /// variable, since the properties file may not set what a variable sets.
    pub fn from_args(args: &KafkaArgs) -> Result<Self, ConfigError> {
        let sec = &args.security;
        let properties = read_properties(args)?;
        let protocol = match (
            sec.kafka_security_protocol.as_deref(),
            properties.get("security.protocol"),
        ) {
            (Some(raw), _) => SecurityProtocol::parse(raw).ok_or_else(|| {
                ConfigError::new(
                    "KAFKA_SECURITY_PROTOCOL",
                    raw,
                    "expected plaintext, ssl, sasl_plaintext or sasl_ssl",
                )
            })?,
            (None, Some(raw)) => SecurityProtocol::parse(raw).ok_or_else(|| {
                properties_error(
                    &properties_path(&properties),
                    "security.protocol: expected plaintext, ssl, sasl_plaintext or sasl_ssl",
                )
            })?,
            (None, None) => SecurityProtocol::Plaintext,
        };
        let mut out = Self::tls_from_args(sec, protocol, properties)?;
        let in_file = |key: &str| out.properties.get(key).is_some();

        // SASL: variables only with a SASL protocol; with one, mechanism and credentials from
        // the variables or the file.
        let password = secret(
            "KAFKA_SASL_PASSWORD",
            sec.kafka_sasl_password.clone(),
            sec.kafka_sasl_password_file.as_deref(),
        )?;
        let mechanism_raw = sec.kafka_sasl_mechanism.as_deref();
        let username = sec.kafka_sasl_username.clone();
        if !protocol.uses_sasl() {
            let set = [
                ("KAFKA_SASL_MECHANISM", mechanism_raw.is_some()),
                ("KAFKA_SASL_USERNAME", username.is_some()),
                ("KAFKA_SASL_PASSWORD", password.is_some()),
            ];
            if let Some((var, _)) = set.iter().find(|(_, is_set)| *is_set) {
                let shown = match *var {
                    "KAFKA_SASL_MECHANISM" => mechanism_raw.unwrap_or_default(),
                    "KAFKA_SASL_USERNAME" => username.as_deref().unwrap_or_default(),
                    _ => "(secret)",
                };
                return Err(ConfigError::new(
                    var,
                    shown,
                    format!(
                        "only used with KAFKA_SECURITY_PROTOCOL=sasl_ssl or sasl_plaintext (it is {})",
                        protocol.as_str()
                    ),
                ));
            }
            return Ok(out);
        }
        let mechanism = match mechanism_raw {
            Some(raw) => Some(SaslMechanism::parse(raw).ok_or_else(|| {
                ConfigError::new(
                    "KAFKA_SASL_MECHANISM",
                    raw,
                    "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                )
            })?),
            None => None,
        };
        let required = |var: &str, extra: &str| {
            ConfigError::new(
                var,
                "",
                format!(
                    "required with KAFKA_SECURITY_PROTOCOL={}{extra}",
                    protocol.as_str()
                ),
            )
        };
        if mechanism.is_none() && !in_file("sasl.mechanism") && !in_file("sasl.mechanisms") {
            return Err(required(
                "KAFKA_SASL_MECHANISM",
                ": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            ));
        }
        if username.is_none() && !in_file("sasl.username") {
            return Err(required("KAFKA_SASL_USERNAME", ""));
        }
        if password.is_none() && !in_file("sasl.password") {
            return Err(required(
                "KAFKA_SASL_PASSWORD",
                " (or KAFKA_SASL_PASSWORD_FILE)",
            ));
        }
        match (mechanism, username, password) {
            (Some(mechanism), Some(username), Some(password)) => {
                out.sasl = Some(SaslCredentials {
                    mechanism,
                    username,
                    password,
                })
            }
            // Partly from the file: the parts from variables join the file's properties.
            (m, u, p) => out = out.with_partial_sasl(m, u, p),
        }
        Ok(out)
    }

    /// The TLS part (and everything else but SASL) of [`KafkaSecurity::from_args`].
    fn tls_from_args(
        sec: &KafkaSecurityArgs,
        protocol: SecurityProtocol,
        properties: ClientProperties,
    ) -> Result<Self, ConfigError> {
        let ca = readable_file(
            "KAFKA_SSL_CA_LOCATION",
            sec.kafka_ssl_ca_location.as_deref(),
        )?;
        let cert = readable_file(
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            sec.kafka_ssl_certificate_location.as_deref(),
        )?;
        let key = readable_file(
            "KAFKA_SSL_KEY_LOCATION",
            sec.kafka_ssl_key_location.as_deref(),
        )?;
        if !protocol.uses_tls() {
            for (var, set) in [
                ("KAFKA_SSL_CA_LOCATION", &ca),
                ("KAFKA_SSL_CERTIFICATE_LOCATION", &cert),
                ("KAFKA_SSL_KEY_LOCATION", &key),
            ] {
                if let Some(path) = set {
                    return Err(ConfigError::new(
                        var,
                        &path.display().to_string(),
                        format!(
                            "only used with KAFKA_SECURITY_PROTOCOL=ssl or sasl_ssl (it is {})",
                            protocol.as_str()
                        ),
                    ));
                }
            }
        }
        match (&cert, &key) {
            (Some(c), None) => {
                return Err(ConfigError::new(
                    "KAFKA_SSL_KEY_LOCATION",
                    "",
                    format!(
                        "required with KAFKA_SSL_CERTIFICATE_LOCATION={} (mutual TLS needs the certificate's private key)",
                        c.display()
                    ),
                ))
            }
            (None, Some(k)) => {
                return Err(ConfigError::new(
                    "KAFKA_SSL_CERTIFICATE_LOCATION",
                    "",
                    format!(
                        "required with KAFKA_SSL_KEY_LOCATION={} (the key's client certificate)",
                        k.display()
                    ),
                ))
            }
            _ => {}
        }
        Ok(Self {
            protocol,
            sasl: None,
            ssl_ca_location: ca,
            ssl_certificate_location: cert,
            ssl_key_location: key,
            properties,
        })
    }

    /// SASL parts given by variables while the rest comes from the properties file: kept as
    /// extra properties so [`KafkaSecurity::apply`] sets them.
    fn with_partial_sasl(
        mut self,
        mechanism: Option<SaslMechanism>,
        username: Option<String>,
        password: Option<Secret>,
    ) -> Self {
        if let Some(m) = mechanism {
            self.properties
                .entries
                .insert("sasl.mechanism".into(), m.as_str().into());
        }
        if let Some(u) = username {
            self.properties.entries.insert("sasl.username".into(), u);
        }
        if let Some(p) = password {
            self.properties
                .entries
                .insert("sasl.password".into(), p.expose().to_owned());
        }
        self
    }

    /// Set everything on a client configuration: the file's properties, then the variables.
    pub fn apply(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties.entries {
            if k != "bootstrap.servers" {
                c.set(k, v);
            }
        }
        c.set("security.protocol", self.protocol.as_str());
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(p) = &self.ssl_ca_location {
            c.set("ssl.ca.location", p.display().to_string());
        } else if self.protocol.uses_tls()
            && self.properties.get("ssl.ca.location").is_none()
            && self.properties.get("ssl.ca.pem").is_none()
        {
            // The system's trust store: librdkafka's OpenSSL is linked in statically, so its
            // built-in default path need not be the system's; "probe" looks in the standard
            // places (/etc/ssl/certs/ca-certificates.crt on Debian).
            c.set("ssl.ca.location", "probe");
        }
        if let Some(p) = &self.ssl_certificate_location {
            c.set("ssl.certificate.location", p.display().to_string());
        }
        if let Some(p) = &self.ssl_key_location {
            c.set("ssl.key.location", p.display().to_string());
        }
    }

    /// One line for the start-up log: what is used, never a secret.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("security.protocol={}", self.protocol.as_str())];
        if let Some(s) = &self.sasl {
            parts.push(format!(
                "sasl.mechanism={} sasl.username={}",
                s.mechanism.as_str(),
                s.username
            ));
        }
        if let Some(p) = &self.ssl_ca_location {
            parts.push(format!("ssl.ca.location={}", p.display()));
        }
        if let Some(p) = &self.ssl_certificate_location {
            parts.push(format!("ssl.certificate.location={}", p.display()));
        }
        if let Some(path) = &self.properties.path {
            parts.push(format!(
                "properties from {} ({})",
                path.display(),
                self.properties.keys().collect::<Vec<_>>().join(", ")
            ));
        }
        parts.join(" ")
    }

    /// Which settings to check when the broker refuses the connection.
    pub fn hint(&self) -> String {
        let mut vars = vec!["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL"];
        if self.protocol.uses_sasl() {
            vars.extend([
                "KAFKA_SASL_MECHANISM",
                "KAFKA_SASL_USERNAME",
                "KAFKA_SASL_PASSWORD",
            ]);
        }
        if self.protocol.uses_tls() {
            vars.push("KAFKA_SSL_CA_LOCATION");
            if self.ssl_certificate_location.is_some() {
                vars.extend(["KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION"]);
            }
        }
        if self.properties.path.is_some() {
            vars.push("KAFKA_PROPERTIES_FILE");
        }
        vars.join(", ")
    }
}

fn properties_path(p: &ClientProperties) -> String {
    p.path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The security settings read from `pairs` the way a service reads its environment.
    fn from_pairs(pairs: &[(&str, &str)]) -> Result<KafkaSecurity, ConfigError> {
        let args: KafkaArgs =
            huleedu_service::settings::parse_vars(&crate::KafkaSettings::command("grp"), pairs)?;
        KafkaSecurity::from_args(&args)
    }

    fn temp(name: &str, content: &str) -> String {
        let dir = std::env::temp_dir().join(format!("huleedu-kafka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        from_pairs(pairs).unwrap_err()
    }

    #[test]
    fn plaintext_by_default_and_nothing_else_is_set() {
        let s = from_pairs(&[]).unwrap();
        assert_eq!(s, KafkaSecurity::default());
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.username"), None);
    }

    #[test]
    fn sasl_ssl_with_scram_sets_librdkafka_properties() {
        let ca = temp("ca.pem", "x");
        let s = from_pairs(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "app"),
            ("KAFKA_SASL_PASSWORD", "pw-123"),
            ("KAFKA_SSL_CA_LOCATION", &ca),
        ])
        .unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("app"));
        assert_eq!(c.get("sasl.password"), Some("pw-123"));
        assert_eq!(c.get("ssl.ca.location"), Some(ca.as_str()));
        // Never shown.
        assert!(!format!("{s:?}").contains("pw-123"));
        assert!(!s.describe().contains("pw-123"));
        assert!(s.describe().contains("sasl.username=app"));
    }

    #[test]
    fn without_a_ca_file_tls_uses_the_system_trust_store() {
        let s = from_pairs(&[("KAFKA_SECURITY_PROTOCOL", "ssl")]).unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));
        let plain = KafkaSecurity::default();
        let mut c = ClientConfig::new();
        plain.apply(&mut c);
        assert_eq!(c.get("ssl.ca.location"), None);
    }

    #[test]
    fn the_password_comes_from_a_file_too() {
        let pw = temp("pw", "from-file\n");
        let s = from_pairs(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "app"),
            ("KAFKA_SASL_PASSWORD_FILE", &pw),
        ])
        .unwrap();
        assert_eq!(s.sasl.unwrap().password.expose(), "from-file");
    }

    #[test]
    fn inconsistent_combinations_name_the_variable() {
        let ca = temp("ca2.pem", "x");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "tls")],
                "KAFKA_SECURITY_PROTOCOL",
            ),
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
                "KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
                ],
                "KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                ],
                "KAFKA_SASL_USERNAME",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "u"),
                ],
                "KAFKA_SASL_PASSWORD",
            ),
            (vec![("KAFKA_SASL_USERNAME", "u")], "KAFKA_SASL_USERNAME"),
            (vec![("KAFKA_SASL_PASSWORD", "p")], "KAFKA_SASL_PASSWORD"),
            (
                vec![("KAFKA_SSL_CA_LOCATION", &ca)],
                "KAFKA_SSL_CA_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
                ],
                "KAFKA_SSL_CA_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", &ca),
                ],
                "KAFKA_SSL_KEY_LOCATION",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_KEY_LOCATION", &ca),
                ],
                "KAFKA_SSL_CERTIFICATE_LOCATION",
            ),
        ];
        for (pairs, var) in cases {
            let e = err(&pairs);
            assert_eq!(e.variable, var, "{pairs:?}: {e}");
        }
        // A password is never echoed, even where it is misplaced.
        let e = err(&[("KAFKA_SASL_PASSWORD", "hunter2")]);
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn a_properties_file_passes_its_keys_through() {
        let file = temp(
            "client.properties",
            "# from the platform's Java clients\n\
             bootstrap.servers=b1:9093,b2:9093\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-256\n\
             sasl.username=platform\n\
             sasl.password=file-secret\n\
             socket.keepalive.enable = true\n\
             client.rack: eu-north-1a\n",
        );
        let s = from_pairs(&[("KAFKA_PROPERTIES_FILE", &file)]).unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.password"), Some("file-secret"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("client.rack"), Some("eu-north-1a"));
        assert_eq!(c.get("bootstrap.servers"), None, "set by KafkaSettings");
        assert_eq!(
            s.properties.get("bootstrap.servers"),
            Some("b1:9093,b2:9093")
        );
        assert!(!format!("{s:?}").contains("file-secret"));
        assert!(!s.describe().contains("file-secret"));
    }

    #[test]
    fn the_password_may_come_from_a_variable_while_the_rest_is_in_the_file() {
        let file = temp(
            "partial.properties",
            "security.protocol=sasl_ssl\nsasl.mechanism=PLAIN\nsasl.username=platform\n",
        );
        let s = from_pairs(&[
            ("KAFKA_PROPERTIES_FILE", &file),
            ("KAFKA_SASL_PASSWORD", "env-secret"),
        ])
        .unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("sasl.username"), Some("platform"));
        assert_eq!(c.get("sasl.password"), Some("env-secret"));
        assert!(!format!("{s:?}").contains("env-secret"));
    }

    #[test]
    fn bad_properties_files_are_refused_naming_the_key_never_the_value() {
        let cases = [
            (
                "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"topsecret\";\n",
                "KAFKA_SASL_USERNAME",
            ),
            ("ssl.truststore.location=/x.jks\n", "KAFKA_SSL_CA_LOCATION"),
            ("acks=1\n", "delivery guarantees"),
            ("enable.auto.commit=false\n", "delivery guarantees"),
            ("no.such.property=topsecret\n", "no.such.property"),
            ("socket.timeout.ms=topsecret\n", "socket.timeout.ms"),
        ];
        for (i, (text, expect)) in cases.iter().enumerate() {
            let file = temp(&format!("bad{i}.properties"), text);
            let e = err(&[("KAFKA_PROPERTIES_FILE", &file)]);
            assert_eq!(e.variable, "KAFKA_PROPERTIES_FILE", "{e}");
            assert!(e.to_string().contains(expect), "{text}: {e}");
            assert!(!e.to_string().contains("topsecret"), "{e}");
        }
        let file = temp("dup.properties", "security.protocol=ssl\n");
        let e = err(&[
            ("KAFKA_PROPERTIES_FILE", &file),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
        ]);
        assert!(
            e.reason.contains("also set by KAFKA_SECURITY_PROTOCOL"),
            "{e}"
        );
        let e = err(&[("KAFKA_PROPERTIES_FILE", "/nonexistent.properties")]);
        assert_eq!(e.variable, "KAFKA_PROPERTIES_FILE");
    }
}
