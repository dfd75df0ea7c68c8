//! The additive rule: a release's migrations only add (tables, nullable columns or columns
//! with a default, indexes), so the previous binary still runs on the new schema during a
//! rolling deploy and after a rollback. Removing or changing something is a *contract*
//! step, shipped a release after the expand that made it unused, in a file that says so
//! with a marker comment:
//!
//! ```sql
//! -- contract: 0.4.0 (reports.legacy_status unused since 0.4.0, which added reports.state)
//! ALTER TABLE reports DROP COLUMN legacy_status;
//! ```
//!
//! The check reads statements (no comments, no literals: see [`super::statements`]) and
//! refuses, unless the file carries the marker: `DROP TABLE`/`VIEW`/`SCHEMA`, `DROP
//! [COLUMN]`, `RENAME` (table or column), a column type change (`ALTER [COLUMN] c [SET DATA]
//! TYPE`), `SET NOT NULL` without a `SET DEFAULT` in the same statement, `ADD [COLUMN] … NOT
//! NULL` without a `DEFAULT`, and `TRUNCATE`.

use super::statements::{split, tokens, Token};

/// One statement the additive rule refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// 1-based position of the statement in its file.
    pub statement: usize,
    /// What it does, e.g. `drops a column`.
    pub what: &'static str,
    /// The statement, without comments.
    pub sql: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first_line = self.sql.lines().next().unwrap_or_default();
        write!(
            f,
            "statement {} {}: {first_line}",
            self.statement, self.what
        )
    }
}

/// The release named by a `-- contract: <release>` line, if the file has one.
pub fn contract_marker(sql: &str) -> Option<&str> {
    sql.lines().find_map(|line| {
        let comment = line.trim().strip_prefix("--")?.trim();
        let release = comment.strip_prefix("contract:")?.trim();
        (!release.is_empty()).then_some(release)
    })
}

/// Every statement of `sql` that is not additive, marker or not.
pub fn violations(sql: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    for (index, statement) in split(sql).into_iter().enumerate() {
        for what in statement_violations(&tokens(&statement)) {
            found.push(Violation {
                statement: index + 1,
                what,
                sql: statement.clone(),
            });
        }
    }
    found
}

/// `Ok` when `sql` is additive, or is a contract step that says so; otherwise what it does
/// that the previous release would not survive.
pub fn check(sql: &str) -> Result<(), Vec<Violation>> {
    let found = violations(sql);
    if found.is_empty() || contract_marker(sql).is_some() {
        Ok(())
    } else {
        Err(found)
    }
}

fn word(token: Option<&Token>) -> Option<&str> {
    match token {
        Some(Token::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

fn is_name(token: Option<&Token>) -> bool {
    matches!(token, Some(Token::Word(_) | Token::Quoted(_)))
}

fn statement_violations(tokens: &[Token]) -> Vec<&'static str> {
    let mut found = Vec::new();
    let at = |i: usize| word(tokens.get(i));
    match (at(0), at(1)) {
        (Some("DROP"), Some("TABLE")) => found.push("drops a table"),
        (Some("DROP"), Some("VIEW")) => found.push("drops a view"),
        (Some("DROP"), Some("SCHEMA")) => found.push("drops a schema"),
        (Some("TRUNCATE"), _) => found.push("empties a table"),
        (Some("ALTER"), Some("TABLE")) => alter_table(tokens, &mut found),
        _ => {}
    }
    found
}

/// The actions of `ALTER TABLE name action [, action…]`, split at top-level commas.
fn alter_table(tokens: &[Token], found: &mut Vec<&'static str>) {
    let mut actions: Vec<&[Token]> = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth = depth.saturating_sub(1),
            Token::Punct(',') if depth == 0 => {
                actions.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    actions.push(&tokens[start..]);
    let sets_default = tokens
        .windows(2)
        .any(|pair| word(pair.first()) == Some("SET") && word(pair.get(1)) == Some("DEFAULT"));
    for (n, action) in actions.into_iter().enumerate() {
        // The first action follows `ALTER TABLE [IF EXISTS] [ONLY] name`.
        let action = if n == 0 {
            skip_table_name(action)
        } else {
            action
        };
        let at = |i: usize| word(action.get(i));
        match at(0) {
            Some("DROP") => match at(1) {
                Some("CONSTRAINT" | "DEFAULT" | "NOT" | "IDENTITY" | "EXPRESSION") => {}
                _ if is_name(action.get(1)) => found.push("drops a column"),
                _ => {}
            },
            Some("RENAME") => match at(1) {
                Some("CONSTRAINT") => {}
                Some("TO") => found.push("renames a table"),
                _ => found.push("renames a column"),
            },
            Some("ALTER") => {
                let name = if at(1) == Some("COLUMN") { 2 } else { 1 };
                let rest: Vec<Option<&str>> = (name + 1..action.len()).map(at).collect();
                match rest.as_slice() {
                    [Some("TYPE"), ..] | [Some("SET"), Some("DATA"), Some("TYPE"), ..] => {
                        found.push("changes a column's type")
                    }
                    [Some("SET"), Some("NOT"), Some("NULL"), ..] if !sets_default => {
                        found.push("makes a column NOT NULL without a default")
                    }
                    _ => {}
                }
            }
            Some("ADD") => {
                let words: Vec<&str> = action.iter().filter_map(|t| word(Some(t))).collect();
                let constraint = matches!(
                    at(1),
                    Some("CONSTRAINT" | "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK")
                );
                let not_null = words.windows(2).any(|pair| pair == ["NOT", "NULL"]);
                if !constraint && not_null && !words.contains(&"DEFAULT") {
                    found.push("adds a NOT NULL column without a default");
                }
            }
            _ => {}
        }
    }
}

fn skip_table_name(tokens: &[Token]) -> &[Token] {
    let mut i = 2; // ALTER TABLE
    while matches!(word(tokens.get(i)), Some("IF" | "EXISTS" | "ONLY")) {
        i += 1;
    }
    // name, or schema . name
    i += 1;
    while tokens.get(i) == Some(&Token::Punct('.')) {
        i += 2;
    }
    tokens.get(i..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(sql: &str) -> Vec<&'static str> {
        violations(sql).into_iter().map(|v| v.what).collect()
    }

    #[test]
    fn additive_statements_pass() {
        let sql = "
            CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, n BIGINT NOT NULL);
            CREATE INDEX IF NOT EXISTS t_n ON t (n);
            ALTER TABLE t ADD COLUMN note TEXT;
            ALTER TABLE t ADD COLUMN tries BIGINT NOT NULL DEFAULT 0;
            ALTER TABLE t ADD CONSTRAINT t_n_positive CHECK (n >= 0);
            ALTER TABLE t ALTER COLUMN n DROP NOT NULL;
            ALTER TABLE t ALTER COLUMN note SET DEFAULT '';
            ALTER TABLE reports ALTER COLUMN type SET DEFAULT 'csv';
            DROP INDEX IF EXISTS t_old;
            UPDATE t SET note = 'DROP TABLE t' WHERE note IS NULL;
        ";
        assert_eq!(whats(sql), Vec::<&str>::new());
        assert_eq!(check(sql), Ok(()));
    }

    #[test]
    fn a_drop_column_fails() {
        let sql = "-- reports lose their error\nALTER TABLE reports DROP COLUMN error;";
        let found = check(sql).expect_err("a DROP COLUMN is not additive");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].what, "drops a column");
        assert_eq!(found[0].statement, 1);
        assert_eq!(
            found[0].to_string(),
            "statement 1 drops a column: ALTER TABLE reports DROP COLUMN error"
        );
        // Without the COLUMN keyword (PostgreSQL), quoted, after another action.
        assert_eq!(whats("ALTER TABLE reports DROP error"), ["drops a column"]);
        assert_eq!(
            whats("alter table if exists public.reports add column x text, drop \"error\""),
            ["drops a column"]
        );
    }

    #[test]
    fn each_destructive_change_is_named() {
        assert_eq!(whats("DROP TABLE reports"), ["drops a table"]);
        assert_eq!(whats("drop view v"), ["drops a view"]);
        assert_eq!(whats("TRUNCATE reports"), ["empties a table"]);
        assert_eq!(
            whats("ALTER TABLE reports RENAME TO old_reports"),
            ["renames a table"]
        );
        assert_eq!(
            whats("ALTER TABLE reports RENAME COLUMN title TO name"),
            ["renames a column"]
        );
        assert_eq!(
            whats("ALTER TABLE reports ALTER COLUMN created_at TYPE TEXT"),
            ["changes a column's type"]
        );
        assert_eq!(
            whats("ALTER TABLE reports ALTER title SET DATA TYPE VARCHAR(10)"),
            ["changes a column's type"]
        );
        assert_eq!(
            whats("ALTER TABLE reports ALTER COLUMN error SET NOT NULL"),
            ["makes a column NOT NULL without a default"]
        );
        assert_eq!(
            whats("ALTER TABLE reports ADD COLUMN owner_email TEXT NOT NULL"),
            ["adds a NOT NULL column without a default"]
        );
        assert_eq!(
            whats("ALTER TABLE reports ALTER COLUMN error SET DEFAULT '', ALTER COLUMN error SET NOT NULL"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn words_in_comments_and_literals_do_not_count() {
        let sql = "/* DROP TABLE reports; */ -- ALTER TABLE reports DROP COLUMN x;\nINSERT INTO notes VALUES ('ALTER TABLE reports DROP COLUMN x; DROP TABLE y');";
        assert_eq!(whats(sql), Vec::<&str>::new());
    }

    #[test]
    fn the_contract_marker_allows_a_contract_step() {
        let sql = "-- contract: 0.4.0 (legacy_status unused since then)\nALTER TABLE reports DROP COLUMN legacy_status;";
        assert_eq!(
            contract_marker(sql),
            Some("0.4.0 (legacy_status unused since then)")
        );
        assert_eq!(check(sql), Ok(()));
        assert_eq!(
            whats(sql),
            ["drops a column"],
            "still reported as a contract"
        );
        // A marker without a release is not one.
        let unnamed = "-- contract:\nALTER TABLE reports DROP COLUMN legacy_status;";
        assert_eq!(contract_marker(unnamed), None);
        assert!(check(unnamed).is_err());
    }
}
