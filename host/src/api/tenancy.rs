//! Tenancy of the querier's HTTP API, as Thanos has it: each request's
//! tenant comes from a header (`--query.tenant-header`, `THANOS-TENANT`), a
//! field of the client certificate (`--query.tenant-certificate-field`) or
//! the default (`--query.default-tenant-id`); it is logged, forwarded to the
//! endpoints as `thanos-tenant` gRPC metadata and, with
//! `--query.enforce-tenancy`, enforced as a matcher
//! (`--query.tenant-label-name` = tenant) on every selection.

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::HttpPeer;
use super::query::bad_data;
use crate::model::{MatchOp, Matcher};

/// Which certificate field names the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertField {
    #[value(name = "organization")]
    Organization,
    #[value(name = "organizationalUnit")]
    OrganizationalUnit,
    #[value(name = "commonName")]
    CommonName,
}

/// The querier's tenancy settings.
#[derive(Debug, Clone)]
pub struct Tenancy {
    /// `--query.tenant-header`.
    pub header: String,
    /// `--query.default-tenant-id`.
    pub default_id: String,
    /// `--query.tenant-certificate-field`.
    pub cert_field: Option<CertField>,
    /// `--query.enforce-tenancy`.
    pub enforce: bool,
    /// `--query.tenant-label-name`.
    pub label: String,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            header: "THANOS-TENANT".into(),
            default_id: sluice_storeapi::DEFAULT_TENANT.into(),
            cert_field: None,
            enforce: false,
            label: "tenant_id".into(),
        }
    }
}

/// The tenant of one request, in its extensions.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// With `--query.enforce-tenancy`: added to every selection.
    pub matcher: Option<Matcher>,
}

impl Tenant {
    /// Adds the enforced matcher, if any, to a selector.
    pub fn scope(&self, mut selector: Vec<Matcher>) -> Vec<Matcher> {
        selector.extend(self.matcher.clone());
        selector
    }
}

/// Thanos' rule: a tenant is not `.`/`..` and holds no path separator.
fn valid(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains(['/', '\\']) && t.len() <= 256
}

impl Tenancy {
    /// The tenant of a request, or why it has none.
    pub fn tenant(
        &self,
        headers: &HeaderMap,
        peer: Option<&crate::tls::PeerInfo>,
    ) -> Result<Tenant, String> {
        let from_header = match headers.get(self.header.as_str()) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|t| valid(t))
                    .ok_or_else(|| format!("invalid tenant in header {}", self.header))?
                    .to_owned(),
            ),
        };
        let from_cert = match self.cert_field {
            None => None,
            Some(field) => {
                let id = peer
                    .and_then(|p| p.identity.as_ref())
                    .filter(|i| i.verified)
                    .ok_or("the tenant comes from the client certificate, and the request has no verified one")?;
                let v = match field {
                    CertField::Organization => id.organizations.first(),
                    CertField::OrganizationalUnit => id.organizational_units.first(),
                    CertField::CommonName => id.common_name.as_ref(),
                };
                Some(
                    v.filter(|t| valid(t))
                        .ok_or_else(|| {
                            format!("the client certificate has no usable {field:?} for the tenant")
                        })?
                        .clone(),
                )
            }
        };
        let id = match (from_header, from_cert) {
            (Some(h), Some(c)) if h != c => {
                return Err(format!(
                    "tenant name in header {} ({h}) does not match the one in the certificate ({c})",
                    self.header
                ));
            }
            (_, Some(c)) => c,
            (Some(h), None) => h,
            (None, None) => self.default_id.clone(),
        };
        let matcher = if self.enforce {
            Some(
                Matcher::new(MatchOp::Eq, self.label.clone(), id.clone())
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        Ok(Tenant { id, matcher })
    }
}

/// Middleware: resolves the tenant of every request into its extensions
/// (a request whose tenant is invalid gets Prometheus' bad_data error).
pub async fn resolve(
    State(t): State<std::sync::Arc<Tenancy>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<HttpPeer>>()
        .map(|c| c.0.0.clone());
    match t.tenant(req.headers(), peer.as_ref()) {
        Ok(tenant) => {
            if req.uri().path().starts_with("/api/") {
                tracing::debug!(tenant = %tenant.id, path = %req.uri().path(), "API request");
            }
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Err(e) => bad_data(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("thanos-tenant", v.parse().unwrap());
        h
    }

    #[test]
    fn header_default_and_enforced_matcher() {
        let t = Tenancy::default();
        assert_eq!(
            t.tenant(&HeaderMap::new(), None).unwrap().id,
            "default-tenant"
        );
        let got = t.tenant(&headers("team-a"), None).unwrap();
        assert_eq!((got.id.as_str(), got.matcher.is_none()), ("team-a", true));
        assert!(t.tenant(&headers("../x"), None).is_err());
        let e = Tenancy {
            enforce: true,
            ..Tenancy::default()
        };
        let m = e.tenant(&headers("team-a"), None).unwrap().matcher.unwrap();
        assert_eq!(m.to_string(), "tenant_id=\"team-a\"");
    }

    #[test]
    fn certificate_field_must_agree_with_header() {
        let t = Tenancy {
            cert_field: Some(CertField::OrganizationalUnit),
            ..Tenancy::default()
        };
        let peer = crate::tls::PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            identity: Some(std::sync::Arc::new(crate::tls::PeerIdentity {
                verified: true,
                organizational_units: vec!["team-b".into()],
                ..Default::default()
            })),
        };
        assert_eq!(
            t.tenant(&HeaderMap::new(), Some(&peer)).unwrap().id,
            "team-b"
        );
        assert!(t.tenant(&headers("team-a"), Some(&peer)).is_err());
        assert!(t.tenant(&HeaderMap::new(), None).is_err());
    }
}
