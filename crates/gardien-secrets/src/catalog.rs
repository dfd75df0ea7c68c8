//! The catalog of environment variables a binary reads, and its two renderings: the
//! readable table `env-docs` prints and the Markdown docs/ENVIRONMENT.md includes.
//!
//! Each variable is one [`EnvVar`] constant next to the code that reads it, and that code
//! reads it through the constant's `name`, so the name documented is the name read. A
//! binary's `env-docs` lists its [`Section`]s, shared crates' entries included.

use std::fmt::Write as _;

/// How a variable's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain variable, read from the process environment.
    Plain,
    /// A secret: looked up through the chain (Secret Manager, `<SECRETS_DIR>/<NAME>`, the
    /// variable, then in `dev` a development default), never printed.
    Secret,
}

/// What a variable is when it is not set, in each environment. Text in Markdown:
/// `` `value` ``, `unset`, `**required**`, a short phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub dev: &'static str,
    pub staging: &'static str,
    pub production: &'static str,
}

impl Defaults {
    /// The same default in every environment.
    pub const fn all(default: &'static str) -> Defaults {
        Defaults {
            dev: default,
            staging: default,
            production: default,
        }
    }
}

/// One variable a binary reads: its name, its default per environment and its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    pub kind: Kind,
    pub defaults: Defaults,
    /// One or two sentences, Markdown.
    pub meaning: &'static str,
}

impl EnvVar {
    /// A plain variable with the same default everywhere.
    pub const fn plain(name: &'static str, default: &'static str, meaning: &'static str) -> Self {
        EnvVar {
            name,
            kind: Kind::Plain,
            defaults: Defaults::all(default),
            meaning,
        }
    }

    /// A secret with the same default everywhere (`unset`, `**required**`…).
    pub const fn secret(name: &'static str, default: &'static str, meaning: &'static str) -> Self {
        EnvVar {
            name,
            kind: Kind::Secret,
            defaults: Defaults::all(default),
            meaning,
        }
    }

    /// The same variable with a default of its own in each environment.
    pub const fn per_environment(
        self,
        dev: &'static str,
        staging: &'static str,
        production: &'static str,
    ) -> Self {
        EnvVar {
            defaults: Defaults {
                dev,
                staging,
                production,
            },
            ..self
        }
    }
}

/// One row of a rendered table: a catalog entry, or a variable whose defaults were worked
/// out elsewhere (the gateway's shipped policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub kind: Kind,
    /// dev, staging, production.
    pub defaults: [String; 3],
    pub meaning: String,
}

impl From<&EnvVar> for Row {
    fn from(var: &EnvVar) -> Row {
        Row {
            name: var.name.to_owned(),
            kind: var.kind,
            defaults: [
                var.defaults.dev,
                var.defaults.staging,
                var.defaults.production,
            ]
            .map(str::to_owned),
            meaning: var.meaning.to_owned(),
        }
    }
}

/// A titled group of rows (one table in docs/ENVIRONMENT.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: &'static str,
    /// A sentence under the title, Markdown; may be empty.
    pub note: &'static str,
    pub rows: Vec<Row>,
}

impl Section {
    pub fn new(title: &'static str, note: &'static str, vars: &[EnvVar]) -> Section {
        Section {
            title,
            note,
            rows: vars.iter().map(Row::from).collect(),
        }
    }
}

/// What `kind` shows in a table.
fn read_as(kind: Kind) -> &'static str {
    match kind {
        Kind::Plain => "variable",
        Kind::Secret => "secret",
    }
}

/// The sections as Markdown: a `###` heading, the note and a table each.
pub fn markdown(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "### {}\n", section.title);
        if !section.note.is_empty() {
            let _ = writeln!(out, "{}\n", section.note);
        }
        out.push_str("| variable | read as | dev | staging | production | meaning |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- |\n");
        for row in &section.rows {
            let [dev, staging, production] = &row.defaults;
            let _ = writeln!(
                out,
                "| `{}` | {} | {dev} | {staging} | {production} | {} |",
                row.name,
                read_as(row.kind),
                row.meaning.replace('|', "\\|")
            );
        }
    }
    out
}

/// The sections as plain text for a terminal: each variable, how it is read, its defaults
/// (one when they agree) and its meaning, without Markdown's marks.
pub fn table(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", section.title);
        let _ = writeln!(out, "{}", "=".repeat(section.title.chars().count()));
        if !section.note.is_empty() {
            let _ = writeln!(out, "{}", plain(section.note));
        }
        for row in &section.rows {
            let [dev, staging, production] = &row.defaults;
            let defaults = if dev == staging && staging == production {
                format!("default: {}", plain(dev))
            } else {
                format!(
                    "dev: {} | staging: {} | production: {}",
                    plain(dev),
                    plain(staging),
                    plain(production)
                )
            };
            let _ = writeln!(out, "\n{} ({})", row.name, read_as(row.kind));
            let _ = writeln!(out, "  {defaults}");
            let _ = writeln!(out, "  {}", plain(&row.meaning));
        }
    }
    out
}

/// Markdown text without its marks: code spans and bold lose their marks, links keep their
/// text.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after
            .find("](")
            .and_then(|mid| after[mid..].find(')').map(|close| (mid, mid + close)))
        {
            Some((mid, close)) => {
                out.push_str(&after[1..mid]);
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out.replace("**", "").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: EnvVar = EnvVar::plain("APP_LOG", "`info`", "log filter ([docs](LOGS.md))");
    const KEY: EnvVar = EnvVar::secret("APP_KEY", "**required**", "signs | things")
        .per_environment("a development default", "**required**", "**required**");

    #[test]
    fn markdown_has_one_row_per_variable_with_its_defaults() {
        let text = markdown(&[Section::new("App", "Read by the app.", &[LOG, KEY])]);
        assert_eq!(
            text,
            "### App\n\nRead by the app.\n\n\
             | variable | read as | dev | staging | production | meaning |\n\
             | --- | --- | --- | --- | --- | --- |\n\
             | `APP_LOG` | variable | `info` | `info` | `info` | log filter ([docs](LOGS.md)) |\n\
             | `APP_KEY` | secret | a development default | **required** | **required** | signs \\| things |\n"
        );
    }

    #[test]
    fn the_table_drops_markdown_and_folds_equal_defaults() {
        let text = table(&[Section::new("App", "", &[LOG, KEY])]);
        assert!(
            text.contains("APP_LOG (variable)\n  default: info\n  log filter (docs)\n"),
            "{text}"
        );
        assert!(
            text.contains("APP_KEY (secret)\n  dev: a development default | staging: required | production: required\n"),
            "{text}"
        );
    }
}
