//! Numbers: cty's arbitrary-precision decimals, and their text. Terraform writes numbers
//! as decimal text (in the state file, in JSON, and for big ones in MessagePack), so
//! reading that text exactly, and bounding what hostile text can cost, belongs with the
//! number itself; both codecs use it.

use std::fmt;

/// The largest decimal exponent accepted in number text. Decimal text is expanded
/// (exponent removed) to keep numbers exact, so an exponent like `1e-999999999` would
/// otherwise become a gigabyte of zeros. No real Terraform number comes near this.
const MAX_DECIMAL_EXPONENT: u64 = 4096;
/// A cty number without loss of precision.
///
/// Terraform numbers are arbitrary-precision decimals. Most are small integers or
/// ordinary floats, so those are kept natively; anything else keeps its exact decimal
/// text.
#[derive(Debug, Clone)]
pub enum Number {
    Int(i64),
    Float(f64),
    /// An exact decimal that fits neither an `i64` nor (exactly) an `f64`.
    Decimal(String),
}

impl Number {
    /// Parses a decimal number, keeping precision; fails on text that is not a number.
    ///
    /// Safe on untrusted text: it is checked to be plain decimal with a bounded exponent
    /// first, so hostile input can neither overflow nor expand into a huge string.
    pub fn parse(text: &str) -> Option<Number> {
        parse_number_text(text.trim())
    }

    /// [`Number::parse`] without the input check; only for text already checked by
    /// the codec.
    pub(crate) fn parse_checked_text(text: &str) -> Option<Number> {
        let text = text.trim();
        if let Ok(i) = text.parse::<i64>() {
            return Some(Number::Int(i));
        }
        let f: f64 = text.parse().ok()?;
        if !f.is_finite() {
            return None;
        }
        // Keep the float only when it says exactly what the text said.
        if format_f64(f) == normalize_decimal(text) {
            Some(Number::Float(f))
        } else {
            Some(Number::Decimal(normalize_decimal(text)))
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Decimal(s) => s.parse().unwrap_or(f64::NAN),
        }
    }

    /// The exact decimal text of the number.
    pub fn to_decimal_string(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => format_f64(*f),
            Number::Decimal(s) => s.clone(),
        }
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Self {
        Number::Int(i)
    }
}

impl From<f64> for Number {
    fn from(f: f64) -> Self {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Number::Int(f as i64)
        } else {
            Number::Float(f)
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            _ => self.to_decimal_string() == other.to_decimal_string(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

/// Formats a float as the shortest decimal that reads back to it, without exponent
/// noise for whole numbers ("1" rather than "1.0").
fn format_f64(f: f64) -> String {
    if f == 0.0 {
        // Also for -0.0, which cty (like arithmetic) treats as equal to 0.
        "0".to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        normalize_decimal(&format!("{f}"))
    }
}

/// Normalises decimal text so equal numbers compare equal as text: no leading `+`,
/// no redundant zeros, no trailing `.`, exponents expanded.
///
/// Visible to the codec, which validates untrusted text (and bounds its exponent)
/// before calling this.
pub(crate) fn normalize_decimal(text: &str) -> String {
    let text = text.trim().trim_start_matches('+');
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(pos) => (&body[..pos], body[pos + 1..].parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(pos) => (&mantissa[..pos], &mantissa[pos + 1..]),
        None => (mantissa, ""),
    };
    let mut digits: String = format!("{int_part}{frac_part}");
    let mut point = int_part.len() as i64 + exponent;
    // Pad so the decimal point falls inside the digits.
    if point < 0 {
        digits = "0".repeat((-point) as usize) + &digits;
        point = 0;
    }
    if point as usize > digits.len() {
        digits.push_str(&"0".repeat(point as usize - digits.len()));
    }
    let (int_digits, frac_digits) = digits.split_at(point as usize);
    let int_digits = int_digits.trim_start_matches('0');
    let frac_digits = frac_digits.trim_end_matches('0');
    let int_digits = if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    };
    let mut out = String::new();
    if negative && !(int_digits == "0" && frac_digits.is_empty()) {
        out.push('-');
    }
    out.push_str(int_digits);
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(frac_digits);
    }
    out
}

// ---------------------------------------------------------------------------------
// Number text
// ---------------------------------------------------------------------------------

/// Checks that `text` is a plain decimal number (`-12.5e3`; what Go's
/// `big.ParseFloat(s, 10, …)` reads, less infinities) with a bounded exponent.
/// Runs before [`Number::parse`] so that hostile text can neither make it expand an
/// enormous exponent nor overflow its arithmetic.
pub(crate) fn is_decimal_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        digits += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let mut exponent: u64 = 0;
        let mut exponent_digits = 0;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(u64::from(d - b'0'));
            i += 1;
            exponent_digits += 1;
        }
        if exponent_digits == 0 || exponent > MAX_DECIMAL_EXPONENT {
            return false;
        }
    }
    i == bytes.len()
}

/// Whether the f64 `f` is *exactly* the normalised decimal `norm` (`-?digits(.digits)?`).
///
/// [`Number::parse`] keeps a float whenever the float's shortest text matches, so
/// "0.1" becomes the f64 nearest 0.1. Terraform reads "0.1" as the exact decimal,
/// though, and would see the f64 (0.1000000000000000055…) as a different number if we
/// sent it back as a float64, making a provider's result "inconsistent". So text only
/// becomes a float when the float is exactly equal to it, and stays a decimal otherwise.
fn f64_equals_decimal(f: f64, norm: &str) -> bool {
    let unsigned = norm.strip_prefix('-').unwrap_or(norm);
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    // Too long for the arithmetic below; such numbers simply stay decimal.
    let n: u128 = if digits.is_empty() {
        0
    } else {
        match digits.parse() {
            Ok(n) => n,
            Err(_) => return false,
        }
    };
    let Ok(k) = u32::try_from(frac_part.len()) else {
        return false;
    };
    // |f| = m * 2^e exactly.
    let bits = f.abs().to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i64;
    let fraction = u128::from(bits & ((1u64 << 52) - 1));
    let (m, e) = if exponent_bits == 0 {
        (fraction, -1074i64)
    } else {
        (fraction | (1u128 << 52), exponent_bits - 1075)
    };
    if m == 0 || n == 0 {
        return m == n;
    }
    // n / 10^k == m * 2^e  <=>  n == m * 5^k * 2^(e + k)
    let Some(rhs) = 5u128.checked_pow(k).and_then(|p| p.checked_mul(m)) else {
        return false;
    };
    let shift = e + i64::from(k);
    if shift >= 0 {
        shl_exact(rhs, shift) == Some(n)
    } else {
        shl_exact(n, -shift) == Some(rhs)
    }
}

/// `x << s` when no bits are lost.
fn shl_exact(x: u128, s: i64) -> Option<u128> {
    let s = u32::try_from(s).ok()?;
    if s >= 128 || (x != 0 && x.leading_zeros() < s) {
        return None;
    }
    Some(x << s)
}

/// Reads decimal number text exactly, as cty's `ParseNumberVal` does.
///
/// Integers that fit become [`Number::Int`], text that is exactly an f64 becomes
/// [`Number::Float`], anything else [`Number::Decimal`] (normalised), so that encoding
/// the number again sends Terraform the same number it sent.
pub fn parse_number_text(text: &str) -> Option<Number> {
    if let Some(number) = parse_integer_text(text) {
        return Some(number);
    }
    if !is_decimal_text(text) {
        return None;
    }
    match Number::parse_checked_text(text) {
        Some(Number::Float(f)) => {
            let norm = Number::Float(f).to_decimal_string();
            if f64_equals_decimal(f, &norm) {
                Some(Number::from(f))
            } else {
                Some(Number::Decimal(norm))
            }
        }
        Some(n) => Some(n),
        // Finite decimal text beyond the f64 range (say 1e400) is still a fine cty
        // number; the exponent bound above keeps its expansion small.
        None => Some(Number::Decimal(normalize_decimal(text))),
    }
}

/// The common case of [`parse_number_text`] without its formatting round trips:
/// canonical integer text (`-?[1-9][0-9]*`, at most 38 digits), which is what go-cty
/// sends for an integer too big for an `i64`. Gives exactly what the general path
/// gives, or `None` to leave the text to it.
fn parse_integer_text(text: &str) -> Option<Number> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.len() > 38 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    let magnitude: u128 = digits.parse().ok()?;
    let signed = if negative {
        0i128.checked_sub_unsigned(magnitude)?
    } else {
        i128::try_from(magnitude).ok()?
    };
    if let Ok(i) = i64::try_from(signed) {
        return Some(Number::Int(i));
    }
    let f = magnitude as f64;
    // Exact when converting back gives the same integer. `Number::parse` keeps such a
    // float only when the float's own text matches, which below 1e21 is guaranteed
    // (it prints exact digits there) and above it must be checked.
    let exact = f as u128 == magnitude && (f < 1e21 || format!("{f}") == digits);
    Some(if exact {
        Number::Float(if negative { -f } else { f })
    } else {
        Number::Decimal(text.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_precision() {
        let big = "123456789012345678901234567890";
        let n = Number::parse(big).unwrap();
        assert_eq!(n.to_decimal_string(), big);
        assert_eq!(Number::parse("1.5").unwrap(), Number::Float(1.5));
        assert_eq!(Number::parse("42").unwrap(), Number::Int(42));
        assert_eq!(Number::parse("1e3").unwrap().as_i64(), Some(1000));
        assert_eq!(Number::parse("0.1").unwrap().to_decimal_string(), "0.1");
        assert_eq!(Number::Float(2.0), Number::Int(2));
        assert!(Number::parse("abc").is_none());
        assert!(Number::parse("inf").is_none());
        // Hostile exponents are refused instead of overflowing or allocating.
        assert!(Number::parse("0e9223372036854775807").is_none());
        assert!(Number::parse("1e-999999999").is_none());
    }

    #[test]
    fn decimal_text_grammar() {
        for ok in [
            "0",
            "-1",
            "+1",
            "1.5",
            ".5",
            "5.",
            "1e3",
            "1E-3",
            "-1.25e+10",
            "1e4096",
        ] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            " 1",
            "1 ",
            "0x10",
            "inf",
            "NaN",
            "1_000",
            "1e4097",
            "0e9223372036854775807",
            "1e-99999999999999999999",
        ] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }

    #[test]
    fn exact_floats_are_recognised() {
        assert!(f64_equals_decimal(0.5, "0.5"));
        assert!(f64_equals_decimal(-1.25, "-1.25"));
        assert!(f64_equals_decimal(1e22, "10000000000000000000000"));
        assert!(!f64_equals_decimal(0.1, "0.1"));
        assert!(!f64_equals_decimal(1e23, "100000000000000000000000"));
        assert!(f64_equals_decimal(0.0, "0"));
        // 2^-1074, the smallest subnormal: too many digits for the check, so "not exact".
        assert!(!f64_equals_decimal(f64::from_bits(1), "0.000…"));
    }

    #[test]
    fn number_text_keeps_what_terraform_meant() {
        assert_eq!(parse_number_text("42"), Some(Number::Int(42)));
        assert!(matches!(parse_number_text("0.5"), Some(Number::Float(f)) if f == 0.5));
        assert!(matches!(parse_number_text("0.1"), Some(Number::Decimal(ref s)) if s == "0.1"));
        assert!(matches!(parse_number_text("1.0"), Some(Number::Int(1))));
        assert!(matches!(
            parse_number_text("1e400"),
            Some(Number::Decimal(ref s)) if s.len() == 401 && s.starts_with('1')
        ));
        assert_eq!(parse_number_text("0e4096"), Some(Number::Int(0)));
        assert_eq!(parse_number_text("abc"), None);
        assert_eq!(parse_number_text("1e99999"), None);
    }

    /// The general path of `parse_number_text`, for checking the integer shortcut.
    fn parse_number_text_slowly(text: &str) -> Option<Number> {
        match Number::parse(text)? {
            Number::Float(f) => {
                let norm = Number::Float(f).to_decimal_string();
                Some(if f64_equals_decimal(f, &norm) {
                    Number::from(f)
                } else {
                    Number::Decimal(norm)
                })
            }
            n => Some(n),
        }
    }

    /// Same variant and same text, which is stricter than `Number`'s `==`.
    fn identical(a: &Option<Number>, b: &Option<Number>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn integer_shortcut_edges() {
        for text in [
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1180591620717411303424",
            "10000000000000000000000",
            "100000000000000000000000",
            "99999999999999999999999999999999999999",
            "-170141183460469231731687303715884105728",
            "340282366920938463463374607431768211455",
        ] {
            let fast = parse_integer_text(text);
            if fast.is_some() {
                assert!(identical(&fast, &parse_number_text_slowly(text)), "{text}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn integer_shortcut_agrees_with_the_general_path(
            text in "-?[1-9][0-9]{0,38}",
            power in 0u32..127,
        ) {
            for text in [text, (1u128 << power).to_string(), format!("-{}", 1u128 << power)] {
                let fast = parse_integer_text(&text);
                if fast.is_some() {
                    let slow = parse_number_text_slowly(&text);
                    proptest::prop_assert!(identical(&fast, &slow), "{}: {:?} vs {:?}", text, fast, slow);
                }
            }
        }
    }
}
