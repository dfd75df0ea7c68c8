//! Recipients as logs may show them: enough to tell two apart while debugging, not enough
//! to reach anyone (`a***@example.com`, `+33*******78`).

use crate::delivery::provider::Message;

/// `alice@example.com` → `a***@example.com`; text without `@` → `***`.
pub fn email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// `+33612345678` → `+33*******78`: the country code and the last two digits stay. Numbers
/// too short to keep anything are all stars.
pub fn phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// The masked recipient of a message.
pub fn recipient(message: &Message) -> String {
    match message {
        Message::Email(email_message) => email(&email_message.to),
        Message::Sms(sms) => phone(&sms.to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("alice@example.com"), "a***@example.com");
        assert_eq!(email("@example.com"), "***@example.com");
        assert_eq!(email("élodie@exemple.fr"), "é***@exemple.fr");
        assert_eq!(email("not-an-address"), "***");
    }

    #[test]
    fn phones() {
        assert_eq!(phone("+33612345678"), "+33*******78");
        assert_eq!(phone("+15005550006"), "+15*******06");
        assert_eq!(phone("12345"), "*****");
        assert_eq!(phone(""), "");
    }
}
