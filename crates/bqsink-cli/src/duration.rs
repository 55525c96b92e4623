//! Durations on the command line: `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// Parses a duration flag's value; the error says what is accepted.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}` is not a duration: use a number with ms, s, m or h (e.g. 500ms, 30s, 5m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use a number with ms, s, m or h (e.g. 500ms, 30s, 5m)"))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("`{text}` is out of range: at most a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse("soon").is_err());
        assert!(parse("5 weeks").is_err());
        assert!(parse("").is_err());
    }
}
