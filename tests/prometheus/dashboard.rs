//! The queries of deploy/grafana/gardien.json as Grafana sends them to Prometheus: every
//! target `expr` of every panel (rows' nested panels too), Grafana's variables substituted.

use serde_json::Value;

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
}

/// What Grafana puts for its built-in interval variables, for a dashboard over the last
/// few minutes of a Prometheus scraping every second: `$__rate_interval` is at least four
/// scrape intervals; one minute covers the test's whole traffic.
const BUILT_INS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

/// Every panel query, variables substituted: the built-ins above, and each template
/// variable of the dashboard (`$route`…) as Grafana's "All" (`.*`, or its `allValue`).
/// Panics on a `$` left over, so a new variable is noticed rather than sent as is.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut variables: Vec<(String, String)> = BUILT_INS
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "datasource" {
            continue;
        }
        let name = variable["name"].as_str().expect("a variable's name");
        let all = variable["allValue"].as_str().unwrap_or(".*");
        variables.push((name.to_owned(), all.to_owned()));
    }
    // Longest first: `$__range_s` before `$__range`.
    variables.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut queries = Vec::new();
    collect(
        dashboard["panels"].as_array().expect("panels"),
        &variables,
        &mut queries,
    );
    queries
}

fn collect(panels: &[Value], variables: &[(String, String)], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let mut expr = expr.to_owned();
            for (name, value) in variables {
                expr = expr
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("[[{name}]]"), value)
                    .replace(&format!("${name}"), value);
            }
            assert!(
                !expr.contains('$'),
                "panel `{title}`: a Grafana variable this test does not substitute: {expr}"
            );
            out.push(PanelQuery {
                panel: title.clone(),
                expr,
            });
        }
        if let Some(nested) = panel["panels"].as_array() {
            collect(nested, variables, out);
        }
    }
}

#[test]
fn variables_are_substituted_as_grafana_would() {
    let dashboard = serde_json::json!({
        "templating": {"list": [
            {"name": "datasource", "type": "datasource"},
            {"name": "route", "type": "query"}
        ]},
        "panels": [
            {"title": "a", "targets": [{"expr": "rate(x{route=~\"$route\"}[$__rate_interval])"}]},
            {"title": "row", "type": "row", "panels": [
                {"title": "b", "targets": [{"expr": "increase(y[${__range_s}s])"}]}
            ]}
        ]
    });
    let queries = panel_queries(&dashboard);
    let exprs: Vec<&str> = queries.iter().map(|q| q.expr.as_str()).collect();
    assert_eq!(
        exprs,
        vec![r#"rate(x{route=~".*"}[1m])"#, "increase(y[300s])"]
    );
}
