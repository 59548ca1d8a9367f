//! The command line's units: durations (`10ms`), rates (`100mbit`), sizes
//! (`256KiB`) and burst-loss specifications. Public so that scripts and
//! other harnesses read the same spellings.

use std::time::Duration;

use crate::config::GilbertElliott;
use crate::error::ParseError;

/// Splits `"12.5ms"` into `(12.5, "ms")`.
fn split(s: &str) -> Result<(f64, &str), ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let value: f64 = num
        .parse()
        .map_err(|_| ParseError::Number(num.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseError::Number(num.to_owned()));
    }
    Ok((value, unit.trim()))
}

/// A duration: a number and one of `ns`, `us` (or `µs`), `ms`, `s`; `0`
/// alone is zero. `"10ms"`, `"1.5ms"`, `"250us"`, `"2s"`.
pub fn duration(s: &str) -> Result<Duration, ParseError> {
    let (value, unit) = split(s)?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "" if value == 0.0 => 0.0,
        _ => {
            return Err(ParseError::Unit {
                unit: unit.to_owned(),
                expected: "ns, us, ms, s",
            })
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| ParseError::Overflow(s.to_owned()))
}

/// A rate in bits per second: a number and one of `bit`, `kbit`, `mbit`,
/// `gbit` (decimal: 1 kbit = 1,000 bit/s; any case); a bare number is bit/s.
/// `"100mbit"`, `"1.5gbit"`. No byte units, to avoid netem's `kbps`, which
/// means kilobytes.
pub fn rate(s: &str) -> Result<u64, ParseError> {
    let (value, unit) = split(s)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => {
            return Err(ParseError::Unit {
                unit: unit.to_owned(),
                expected: "bit, kbit, mbit, gbit",
            })
        }
    };
    let bits = (value * scale).round();
    if bits >= u64::MAX as f64 {
        return Err(ParseError::Overflow(s.to_owned()));
    }
    Ok(bits as u64)
}

/// A size in bytes: a number and one of `B`, `KB`, `MB`, `GB` (decimal) or
/// `KiB`, `MiB`, `GiB` (binary; any case); a bare number is bytes.
/// `"256KiB"`, `"1MB"`, `"1500"`.
pub fn size(s: &str) -> Result<usize, ParseError> {
    let (value, unit) = split(s)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(ParseError::Unit {
                unit: unit.to_owned(),
                expected: "B, KB, MB, GB, KiB, MiB, GiB",
            })
        }
    };
    let bytes = (value * scale).round();
    if bytes >= usize::MAX as f64 {
        return Err(ParseError::Overflow(s.to_owned()));
    }
    Ok(bytes as usize)
}

/// Gilbert–Elliott burst loss as `P,R[,LOSS_BAD[,LOSS_GOOD]]`
/// (`LOSS_BAD` defaults to 1, `LOSS_GOOD` to 0): `"0.01,0.3"` enters a
/// burst on 1% of datagrams and stays in it for 1/0.3 ≈ 3.3 datagrams on
/// average. The values are checked by [`LinkDirection::validate`](crate::LinkDirection::validate).
pub fn burst_loss(s: &str) -> Result<GilbertElliott, ParseError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if !(2..=4).contains(&parts.len()) {
        return Err(ParseError::BurstLoss(s.to_owned()));
    }
    let num = |i: usize, default: f64| -> Result<f64, ParseError> {
        match parts.get(i) {
            None => Ok(default),
            Some(p) => p.parse().map_err(|_| ParseError::BurstLoss(s.to_owned())),
        }
    };
    Ok(GilbertElliott {
        p: num(0, 0.0)?,
        r: num(1, 0.0)?,
        loss_bad: num(2, 1.0)?,
        loss_good: num(3, 0.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(duration(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(matches!(duration("10"), Err(ParseError::Unit { .. })));
        assert!(matches!(duration("10 min"), Err(ParseError::Unit { .. })));
        assert!(matches!(duration("-1ms"), Err(ParseError::Number(_))));
        assert!(matches!(duration("1.2.3ms"), Err(ParseError::Number(_))));
        assert_eq!(duration(""), Err(ParseError::Empty));
        assert!(duration("1e400s").is_err());
        assert!(matches!(
            duration("99999999999999999999999s"),
            Err(ParseError::Overflow(_))
        ));
    }

    #[test]
    fn rates() {
        assert_eq!(rate("100mbit"), Ok(100_000_000));
        assert_eq!(rate("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(rate("64kbit"), Ok(64_000));
        assert_eq!(rate("9600"), Ok(9600));
        assert!(matches!(rate("10kbps"), Err(ParseError::Unit { .. })));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("256KiB"), Ok(256 * 1024));
        assert_eq!(size("1MB"), Ok(1_000_000));
        assert_eq!(size("1500"), Ok(1500));
        assert_eq!(size("2mib"), Ok(2 << 20));
        assert!(matches!(size("3 parsecs"), Err(ParseError::Unit { .. })));
    }

    #[test]
    fn burst() {
        let ge = burst_loss("0.01,0.3").unwrap();
        assert_eq!(
            (ge.p, ge.r, ge.loss_bad, ge.loss_good),
            (0.01, 0.3, 1.0, 0.0)
        );
        let ge = burst_loss("0.1, 0.5, 0.9, 0.001").unwrap();
        assert_eq!(ge.loss_good, 0.001);
        assert!(burst_loss("0.1").is_err());
        assert!(burst_loss("a,b").is_err());
        assert!(burst_loss("1,2,3,4,5").is_err());
    }
}
