/// Durations in Go's `time.ParseDuration` form (`10s`, `1m30s`, `120000ms`), as Consul accepts them.
public enum GoDuration {
    private static let units: [(suffix: String, nanos: Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]

    /// Parses `text` into nanoseconds; nil when it is not a valid Go duration.
    public static func parseNanoseconds(_ text: String) -> Int64? {
        var rest = Substring(text)
        var negative = false
        if rest.first == "-" || rest.first == "+" {
            negative = rest.first == "-"
            rest = rest.dropFirst()
        }
        if rest == "0" { return 0 }
        if rest.isEmpty { return nil }
        var total: Double = 0
        while !rest.isEmpty {
            let number = rest.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ".") })
            guard !number.isEmpty, number != ".", let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix(while: { !($0.isASCII && ($0.isNumber || $0 == ".")) })
            guard let unit = units.first(where: { $0.suffix == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            total += value * unit.nanos
        }
        guard total < 9.2e18 else { return nil }
        return Int64(negative ? -total : total)
    }

    /// Formats nanoseconds as Go's `Duration.String()` does (`1m30s`, `500ms`, `0s`).
    public static func format(nanoseconds: Int64) -> String {
        if nanoseconds == 0 { return "0s" }
        let negative = nanoseconds < 0
        let magnitude = nanoseconds.magnitude
        var text: String
        if magnitude < 1_000_000_000 {
            let (unit, scale): (String, UInt64) =
                magnitude < 1_000 ? ("ns", 1) : magnitude < 1_000_000 ? ("µs", 1_000) : ("ms", 1_000_000)
            text = fraction(magnitude, scale: scale) + unit
        } else {
            let hours = magnitude / 3_600_000_000_000
            let minutes = (magnitude / 60_000_000_000) % 60
            let seconds = fraction(magnitude % 60_000_000_000, scale: 1_000_000_000) + "s"
            if hours > 0 {
                text = "\(hours)h\(minutes)m\(seconds)"
            } else if minutes > 0 {
                text = "\(minutes)m\(seconds)"
            } else {
                text = seconds
            }
        }
        if negative { text = "-" + text }
        return text
    }

    public static func format(_ duration: Duration) -> String {
        format(nanoseconds: duration.nanoseconds)
    }

    private static func fraction(_ value: UInt64, scale: UInt64) -> String {
        let whole = value / scale
        var remainder = value % scale
        guard remainder != 0 else { return String(whole) }
        var digits = ""
        var divisor = scale / 10
        while remainder != 0 && divisor > 0 {
            digits.append(Character(String(remainder / divisor)))
            remainder %= divisor
            divisor /= 10
        }
        return "\(whole).\(digits)"
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at Int64's range.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product &+ attoseconds / 1_000_000_000
    }

    /// Seconds as a Double, as Prometheus records durations.
    public var seconds: Double { Double(nanoseconds) / 1e9 }
}
