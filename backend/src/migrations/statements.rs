//! Splits a migration file into its SQL statements, without comments, and each statement
//! into tokens: enough SQL lexing for `migrate up --dry-run` to show what would run and for
//! the additive check to read keywords without being fooled by a comment, a string literal
//! or a quoted identifier that happens to say `DROP`.

/// One lexical token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A keyword or an unquoted identifier, upper-cased.
    Word(String),
    /// A `"quoted"` identifier (or a `` `backquoted` `` / `[bracketed]` one, SQLite), as
    /// written.
    Quoted(String),
    /// A `'string'` literal.
    Text,
    /// A number.
    Number,
    /// Any other character: `(`, `)`, `,`, `=`…
    Punct(char),
}

/// The statements of `sql`, in order: comments removed, blank lines dropped, each trimmed,
/// without the `;` that ends it. Semicolons inside literals, quoted identifiers and
/// dollar-quoted bodies do not split.
pub fn split(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                current.push(' ');
                continue;
            }
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                let end = quoted_end(&chars, i, close);
                current.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '$' => {
                if let Some(end) = dollar_quoted_end(&chars, i) {
                    current.extend(&chars[i..end]);
                    i = end;
                    continue;
                }
            }
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    push_statement(&mut statements, &current);
    statements
}

/// Where a literal opened at `start` by `chars[start]` ends (one past its closing quote; a
/// doubled quote is an escaped one), or the end of the text.
fn quoted_end(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == close {
            if chars.get(i + 1) == Some(&close) && close != ']' {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// A PostgreSQL `$tag$ … $tag$` body starting at `start`: one past its end.
fn dollar_quoted_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    if chars.get(i) != Some(&'$') {
        return None;
    }
    let tag: String = chars[start..=i].iter().collect();
    let body_start = i + 1;
    let rest: String = chars[body_start..].iter().collect();
    let end = rest.find(&tag)?;
    Some(body_start + rest[..end].chars().count() + tag.chars().count())
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return;
    }
    // Keep the relative indentation: drop only what every line shares.
    let indent = lines
        .iter()
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let joined: Vec<&str> = lines.iter().map(|line| &line[indent..]).collect();
    statements.push(joined.join("\n"));
}

/// The tokens of one statement (from [`split`]: no comments left).
pub fn tokens(statement: &str) -> Vec<Token> {
    let chars: Vec<char> = statement.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token::Word(word.to_uppercase()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number);
        } else if c == '\'' {
            i = quoted_end(&chars, i, '\'');
            tokens.push(Token::Text);
        } else if matches!(c, '"' | '`' | '[') {
            let close = if c == '[' { ']' } else { c };
            let end = quoted_end(&chars, i, close);
            let inner: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
                .iter()
                .collect();
            tokens.push(Token::Quoted(inner));
            i = end;
        } else if c == '$' {
            match dollar_quoted_end(&chars, i) {
                Some(end) => {
                    tokens.push(Token::Text);
                    i = end;
                }
                None => {
                    tokens.push(Token::Punct(c));
                    i += 1;
                }
            }
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_literals_and_drops_comments() {
        let sql = "-- a comment; not a statement\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\n\n/* block; */ CREATE INDEX i ON a (x); -- trailing\n";
        assert_eq!(
            split(sql),
            vec![
                "CREATE TABLE a (x TEXT DEFAULT 'a;b')".to_owned(),
                "CREATE INDEX i ON a (x)".to_owned(),
            ]
        );
    }

    #[test]
    fn a_file_of_comments_has_no_statement() {
        assert!(split("-- nothing\n\n/* here */\n").is_empty());
    }

    #[test]
    fn dollar_quoted_bodies_do_not_split() {
        let sql =
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT 2;";
        let statements = split(sql);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].ends_with("LANGUAGE sql"));
    }

    #[test]
    fn tokens_upper_case_words_and_hide_literals() {
        assert_eq!(
            tokens("alter table \"Drop\" add column x text default 'DROP TABLE'"),
            vec![
                Token::Word("ALTER".into()),
                Token::Word("TABLE".into()),
                Token::Quoted("Drop".into()),
                Token::Word("ADD".into()),
                Token::Word("COLUMN".into()),
                Token::Word("X".into()),
                Token::Word("TEXT".into()),
                Token::Word("DEFAULT".into()),
                Token::Text,
            ]
        );
    }

    #[test]
    fn an_unterminated_literal_does_not_panic() {
        assert_eq!(split("SELECT 'oops").len(), 1);
        assert_eq!(tokens("SELECT \"oops").len(), 2);
        assert_eq!(tokens("SELECT $tag$ oops").len(), 5);
    }
}
