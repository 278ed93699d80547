//! Slot configuration: the host turns the slot's YAML `config:` into JSON
//! text and hands it to `configure`; [`parse_config`] deserializes it.

use serde::de::DeserializeOwned;

/// Deserializes the JSON text given to `configure` into `T`.
///
/// An empty text or `null` (a slot without `config:`) is read as `{}`, so a
/// struct whose fields all have defaults accepts it. Errors name the line and
/// column, and are meant to be returned from `configure` as they are. Put
/// `#[serde(deny_unknown_fields)]` on `T` so a misspelt key is an error
/// rather than silently ignored.
pub fn parse_config<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = config.trim();
    let text = if text.is_empty() || text == "null" {
        "{}"
    } else {
        text
    };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

/// A configuration that must be empty: for policies without settings.
/// `parse_config::<NoConfig>(config)` rejects any key.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn empty_and_null_mean_defaults() {
        assert_eq!(parse_config::<Conf>("").unwrap(), Conf { n: 0 });
        assert_eq!(parse_config::<Conf>(" null ").unwrap(), Conf { n: 0 });
        assert_eq!(parse_config::<Conf>(r#"{"n": 3}"#).unwrap(), Conf { n: 3 });
        assert!(parse_config::<NoConfig>("{}").is_ok());
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = parse_config::<Conf>(r#"{"m": 1}"#).unwrap_err();
        assert!(
            e.contains("unknown field `m`") && e.contains("line 1"),
            "{e}"
        );
        assert!(parse_config::<NoConfig>(r#"{"x": 1}"#).is_err());
    }
}
