//! Routes: ordered path prefixes (and optional methods) that pick an upstream.
//!
//! **First match wins**, in the order of the policy file, so ops read the file top-down the
//! way the gateway does. Prefixes are segment-aware: `/api/reports` matches `/api/reports`
//! and `/api/reports/7` but not `/api/reportsx`; a prefix ending in `/` (`/api/auth/`) also
//! matches the path without its slash (`/api/auth`).

use http::{HeaderValue, Method};

use crate::policy::schema::{RouteAuthSpec, RouteSpec};
use crate::policy::Diagnostics;

/// One validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub prefix: String,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// Index into the policy's upstreams.
    pub upstream: usize,
    pub auth: RouteAuth,
}

/// Who may use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No token needed (sign-up, login, password reset, health).
    Public,
    /// A valid token; when `roles` is not empty, carrying one of them.
    Required { roles: Vec<String> },
}

impl Route {
    fn matches_path(&self, path: &str) -> bool {
        prefix_matches(&self.prefix, path)
    }

    fn accepts(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.contains(method))
    }
}

/// What the router found for a request.
#[derive(Debug, PartialEq)]
pub enum RouteMatch {
    /// Index of the matching route.
    Found(usize),
    /// Some route has this path but none takes this method; the `Allow` header value.
    MethodNotAllowed(HeaderValue),
    NotFound,
}

/// The ordered routes of a policy.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Validates `routes:` against the names of the policy's upstreams. Routes need a token
    /// unless they say `auth: public`; `has_issuers` tells whether the policy can check one.
    pub fn compile(
        specs: &[RouteSpec],
        upstreams: &[String],
        has_issuers: bool,
        diag: &mut Diagnostics,
    ) -> Router {
        let mut routes: Vec<Route> = Vec::with_capacity(specs.len());
        let mut names: Vec<&str> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let path = |field: &str| format!("routes[{i}].{field}");
            let mut ok = true;
            if !is_valid_name(&spec.name) {
                diag.error(
                    path("name"),
                    "route names are 1-64 characters of a-z, 0-9, `_` and `-` (they label metrics)",
                );
                ok = false;
            } else if let Some(first) = names.iter().position(|n| *n == spec.name) {
                diag.error(
                    path("name"),
                    format!(
                        "duplicate route name `{}` (also routes[{first}])",
                        spec.name
                    ),
                );
                ok = false;
            }
            names.push(&spec.name);
            if !spec.prefix.starts_with('/') {
                diag.error(path("prefix"), "a prefix starts with `/`");
                ok = false;
            } else if !is_safe_path(&spec.prefix) {
                diag.error(
                    path("prefix"),
                    "a prefix cannot contain dot-segments, encoded separators or `//`",
                );
                ok = false;
            }
            let upstream = upstreams.iter().position(|u| *u == spec.upstream);
            if upstream.is_none() {
                let suggestion =
                    crate::policy::suggest(&spec.upstream, upstreams.iter().map(String::as_str));
                diag.error(
                    path("upstream"),
                    format!(
                        "unknown upstream `{}`; defined: {}{suggestion}",
                        spec.upstream,
                        if upstreams.is_empty() {
                            "none".to_owned()
                        } else {
                            upstreams.join(", ")
                        }
                    ),
                );
                ok = false;
            }
            let methods = match &spec.methods {
                None => None,
                Some(list) if list.is_empty() => {
                    diag.error(
                        path("methods"),
                        "an empty list takes no request; leave `methods` out to take every method",
                    );
                    ok = false;
                    None
                }
                Some(list) => {
                    let mut methods = Vec::with_capacity(list.len());
                    for (j, m) in list.iter().enumerate() {
                        match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                            Ok(method) => methods.push(method),
                            Err(_) => {
                                diag.error(
                                    format!("routes[{i}].methods[{j}]"),
                                    format!("`{m}` is not an HTTP method"),
                                );
                                ok = false;
                            }
                        }
                    }
                    Some(methods)
                }
            };
            let auth = match (spec.auth, &spec.roles) {
                (Some(RouteAuthSpec::Public), Some(_)) => {
                    diag.error(
                        path("roles"),
                        "a public route cannot require roles; remove `auth: public` or `roles`",
                    );
                    ok = false;
                    RouteAuth::Public
                }
                (Some(RouteAuthSpec::Public), None) => RouteAuth::Public,
                (_, roles) => {
                    let roles = roles.clone().unwrap_or_default();
                    if roles
                        .iter()
                        .any(|r| r.trim().is_empty() || r.contains([',', ' ']))
                    {
                        diag.error(
                            path("roles"),
                            "role names are non-empty and contain no spaces or commas",
                        );
                        ok = false;
                    }
                    if !has_issuers {
                        diag.error(
                            path("auth"),
                            "this route needs a token (routes are protected by default) but `jwt.issuers` is empty: configure an issuer or write `auth: public`",
                        );
                        ok = false;
                    }
                    RouteAuth::Required { roles }
                }
            };
            if let (true, Some(upstream)) = (ok, upstream) {
                routes.push(Route {
                    name: spec.name.clone(),
                    prefix: spec.prefix.clone(),
                    methods,
                    upstream,
                    auth,
                });
            }
        }
        if specs.is_empty() {
            diag.error("routes", "at least one route is needed");
        }
        warn_shadowed(&routes, diag);
        Router { routes }
    }

    /// Finds the first route for `path` and `method`.
    pub fn find(&self, path: &str, method: &Method) -> RouteMatch {
        let mut path_matched = false;
        for (index, route) in self.routes.iter().enumerate() {
            if route.matches_path(path) {
                if route.accepts(method) {
                    return RouteMatch::Found(index);
                }
                path_matched = true;
            }
        }
        if path_matched {
            RouteMatch::MethodNotAllowed(self.allowed_methods(path))
        } else {
            RouteMatch::NotFound
        }
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    fn allowed_methods(&self, path: &str) -> HeaderValue {
        let mut methods: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches_path(path)) {
            for m in route.methods.iter().flatten() {
                if !methods.contains(&m.as_str()) {
                    methods.push(m.as_str());
                }
            }
        }
        HeaderValue::from_str(&methods.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Segment-aware prefix test (see the module documentation).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    if let Some(bare) = prefix.strip_suffix('/') {
        path.starts_with(prefix) || path == bare
    } else {
        path.len() >= prefix.len()
            && path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
    }
}

/// A route after one that takes every method and covers its prefix can never match.
fn warn_shadowed(routes: &[Route], diag: &mut Diagnostics) {
    for (j, later) in routes.iter().enumerate() {
        if let Some(earlier) = routes[..j]
            .iter()
            .find(|r| r.methods.is_none() && prefix_matches(&r.prefix, &later.prefix))
        {
            diag.warn(
                format!("routes[{j}]"),
                format!(
                    "route `{}` never matches: route `{}` comes first and covers `{}` (first match wins)",
                    later.name, earlier.name, later.prefix
                ),
            );
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Refuses the paths that make a gateway and its upstream disagree about which resource is
/// meant: dot-segments (`/api/auth/../reports` would match a public route here and reach
/// `/api/reports` upstream), their percent-encoded forms, encoded `/` and `\`, backslashes,
/// NUL and other control characters, and empty segments (`//`).
pub fn is_safe_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let bytes = path.as_bytes();
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return false;
    }
    let lower_has = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if lower_has(b"%2f") || lower_has(b"%5c") || lower_has(b"%00") {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() && segments.peek().is_some() {
            return false;
        }
        let decoded_dots = segment.replace("%2e", ".").replace("%2E", ".");
        if decoded_dots == "." || decoded_dots == ".." {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, prefix: &str, upstream: &str, methods: Option<&[&str]>) -> RouteSpec {
        RouteSpec {
            name: name.into(),
            prefix: prefix.into(),
            upstream: upstream.into(),
            methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            auth: Some(RouteAuthSpec::Public),
            roles: None,
        }
    }

    fn router(specs: &[RouteSpec]) -> (Router, Diagnostics) {
        let mut diag = Diagnostics::default();
        let upstreams = vec!["api".to_owned(), "backend".to_owned()];
        (Router::compile(specs, &upstreams, false, &mut diag), diag)
    }

    #[test]
    fn first_match_wins_and_prefixes_are_segment_aware() {
        let (r, diag) = router(&[
            spec("auth", "/api/auth/", "api", None),
            spec("reports", "/api/reports", "backend", None),
            spec("api", "/api/", "api", None),
        ]);
        assert!(!diag.has_errors());
        let get = Method::GET;
        assert_eq!(r.find("/api/auth/login", &get), RouteMatch::Found(0));
        assert_eq!(r.find("/api/auth", &get), RouteMatch::Found(0));
        assert_eq!(r.find("/api/reports", &get), RouteMatch::Found(1));
        assert_eq!(r.find("/api/reports/7", &get), RouteMatch::Found(1));
        assert_eq!(r.find("/api/reportsx", &get), RouteMatch::Found(2));
        assert_eq!(r.find("/api", &get), RouteMatch::Found(2));
        assert_eq!(r.find("/other", &get), RouteMatch::NotFound);
        assert_eq!(r.find("/apix", &get), RouteMatch::NotFound);
    }

    #[test]
    fn methods_restrict_and_405_lists_allow() {
        let (r, _) = router(&[
            spec("read", "/api/items", "api", Some(&["GET", "HEAD"])),
            spec("write", "/api/items", "backend", Some(&["post"])),
        ]);
        assert_eq!(r.find("/api/items", &Method::GET), RouteMatch::Found(0));
        assert_eq!(r.find("/api/items/1", &Method::POST), RouteMatch::Found(1));
        assert_eq!(
            r.find("/api/items", &Method::DELETE),
            RouteMatch::MethodNotAllowed(HeaderValue::from_static("GET, HEAD, POST"))
        );
    }

    #[test]
    fn every_bad_route_is_reported() {
        let (_, diag) = router(&[
            spec("Bad Name", "api", "apii", None),
            spec("ok", "/x/../y", "api", Some(&["GE T"])),
            spec("ok", "/z", "api", Some(&[])),
        ]);
        let paths: Vec<_> = diag.errors().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "routes[0].name",
                "routes[0].prefix",
                "routes[0].upstream",
                "routes[1].prefix",
                "routes[1].methods[0]",
                "routes[2].name",
                "routes[2].methods",
            ]
        );
        assert!(diag.errors()[2].message.contains("did you mean `api`"));
    }

    #[test]
    fn routes_are_protected_by_default() {
        let mut protected = spec("api", "/api/", "api", None);
        protected.auth = None;
        let (_, diag) = router(std::slice::from_ref(&protected));
        assert_eq!(
            diag.errors()[0].path,
            "routes[0].auth",
            "no issuer to check tokens"
        );

        let mut diag = Diagnostics::default();
        protected.roles = Some(vec!["admin".into()]);
        let r = Router::compile(&[protected], &["api".to_owned()], true, &mut diag);
        assert!(!diag.has_errors());
        assert_eq!(
            r.get(0).map(|route| route.auth.clone()),
            Some(RouteAuth::Required {
                roles: vec!["admin".into()]
            })
        );

        let mut public_with_roles = spec("x", "/x", "api", None);
        public_with_roles.roles = Some(vec!["admin".into()]);
        let (_, diag) = router(&[public_with_roles]);
        assert_eq!(diag.errors()[0].path, "routes[0].roles");
    }

    #[test]
    fn shadowed_routes_are_warned() {
        let (_, diag) = router(&[
            spec("api", "/api/", "api", None),
            spec("reports", "/api/reports", "backend", None),
        ]);
        assert!(!diag.has_errors());
        assert_eq!(diag.warnings()[0].path, "routes[1]");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "/api/auth/../reports",
            "/api/./x",
            "/api/%2e%2e/x",
            "/api/%2E./x",
            "/api/.%2e",
            "/api%2freports",
            "/api%5Creports",
            "/api\\reports",
            "/api//reports",
            "/a\u{1}b",
            "/a%00b",
            "relative",
        ] {
            assert!(!is_safe_path(bad), "{bad:?} must be refused");
        }
        for good in [
            "/",
            "/api/",
            "/api/reports",
            "/api/v1.2/x",
            "/api/..x/y",
            "/a%20b",
        ] {
            assert!(is_safe_path(good), "{good:?} must pass");
        }
    }
}
