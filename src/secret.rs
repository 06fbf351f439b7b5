//! Secrets in the configuration, and the librdkafka properties that may hold them.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and has no `Display`: the only way to
//! its text is [`Secret::expose`], called where the value is handed to librdkafka.
//! [`ClientProps`], the `[kafka.client]` passthrough, keeps every property whose name
//! marks it as a credential (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, ...) as a
//! `Secret`, so a settings tree printed with `{:?}` (in a log line, a panic, a test
//! failure) shows which credentials are set but never their values.

use std::collections::BTreeMap;
use std::fmt;

/// A credential. `Debug` shows `[redacted]`; there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must pass it on (the librdkafka configuration).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Whether a librdkafka property holds a credential: passwords, private keys, OAuth
/// client secrets and configurations (which may embed one).
pub(crate) fn is_sensitive(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    p.contains("password")
        || p.contains("secret")
        || p == "ssl.key.pem"
        || p == "ssl_key"
        || p == "sasl.oauthbearer.config"
}

/// librdkafka properties by dotted name; credentials held as [`Secret`]s.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProps {
    plain: BTreeMap<String, String>,
    secret: BTreeMap<String, Secret>,
}

impl ClientProps {
    /// Sets `property`, as a [`Secret`] when [`is_sensitive`] says it is a credential.
    pub fn insert(&mut self, property: impl Into<String>, value: impl Into<String>) {
        let property = property.into();
        if is_sensitive(&property) {
            self.plain.remove(&property);
            self.secret.insert(property, Secret::new(value));
        } else {
            self.secret.remove(&property);
            self.plain.insert(property, value.into());
        }
    }

    /// A property that is not a credential (credentials answer `None`; see [`Self::has`]).
    pub(crate) fn get(&self, property: &str) -> Option<&str> {
        self.plain.get(property).map(String::as_str)
    }

    /// Whether `property` is set, credential or not.
    pub fn has(&self, property: &str) -> bool {
        self.plain.contains_key(property) || self.secret.contains_key(property)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.secret.is_empty()
    }

    /// Every property name, credentials included.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.plain
            .keys()
            .chain(self.secret.keys())
            .map(String::as_str)
    }

    /// Every property with its value, credentials exposed: only for handing them to
    /// librdkafka.
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        let plain = self.plain.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let secret = self.secret.iter().map(|(k, v)| (k.as_str(), v.expose()));
        plain.chain(secret)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ClientProps {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut props = ClientProps::default();
        for (k, v) in iter {
            props.insert(k, v);
        }
        props
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for ClientProps {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

/// As a table of property names, credentials as `[redacted]` (`check-config --print`).
impl serde::Serialize for ClientProps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.plain.len() + self.secret.len()))?;
        for (k, v) in &self.plain {
            map.serialize_entry(k, v)?;
        }
        for k in self.secret.keys() {
            map.serialize_entry(k, "[redacted]")?;
        }
        map.end()
    }
}

impl fmt::Debug for ClientProps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.plain.iter().map(|(k, v)| (k, v as &dyn fmt::Debug)))
            .entries(self.secret.iter().map(|(k, v)| (k, v as &dyn fmt::Debug)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let props = ClientProps::from([
            ("security.protocol", "sasl_ssl"),
            ("sasl.password", "hunter2-MARKER"),
            ("ssl.key.password", "keypass-MARKER"),
            ("SSL.KEY.PEM", "-----BEGIN PRIVATE KEY----- MARKER"),
            ("sasl.oauthbearer.client.secret", "oauth-MARKER"),
        ]);
        let shown = format!("{props:?} {props:#?}");
        assert!(!shown.contains("MARKER"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("sasl_ssl"), "{shown}");
        assert_eq!(format!("{:?}", Secret::new("x")), "[redacted]");
    }

    #[test]
    fn credentials_are_kept_and_exposed_only_on_request() {
        let mut props = ClientProps::from([("sasl.password", "one")]);
        assert!(props.has("sasl.password"));
        assert_eq!(props.get("sasl.password"), None);
        props.insert("sasl.password", "two");
        props.insert("sasl.username", "vitalwatch");
        let all: BTreeMap<&str, &str> = props.expose().collect();
        assert_eq!(all["sasl.password"], "two");
        assert_eq!(all["sasl.username"], "vitalwatch");
        assert_eq!(all.len(), 2);
        assert_eq!(props.names().count(), 2);
    }
}
