import Telemetry

/// One of Prometheus's `metric_relabel_configs`: applied to every scraped sample's labels, with
/// the metric name as `__name__`.
public struct RelabelRule: @unchecked Sendable {
    public enum Action: String, Sendable {
        case replace, keep, drop, labeldrop, labelkeep
    }

    public var action: Action
    public var sourceLabels: [String]
    public var separator: String
    public var targetLabel: String?
    public var replacement: String
    /// Anchored like Prometheus's; immutable once built.
    let regex: Regex<AnyRegexOutput>

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(action: Action = .replace, sourceLabels: [String] = [], separator: String = ";", regex: String = "(.*)",
                targetLabel: String? = nil, replacement: String = "$1") throws(Invalid) {
        if action == .replace && targetLabel == nil { throw Invalid(description: "relabel action replace needs target_label") }
        if (action == .keep || action == .drop) && sourceLabels.isEmpty {
            throw Invalid(description: "relabel action \(action.rawValue) needs source_labels")
        }
        do { self.regex = try Regex(regex) } catch { throw Invalid(description: "invalid relabel regex \"\(regex)\"") }
        self.action = action
        self.sourceLabels = sourceLabels
        self.separator = separator
        self.targetLabel = targetLabel
        self.replacement = replacement
    }

    /// Rewrites `labels`; false when the sample must be dropped.
    public func apply(_ labels: inout [Label]) -> Bool {
        switch action {
        case .labeldrop:
            labels.removeAll { $0.name != "__name__" && (try? regex.wholeMatch(in: $0.name)) != nil }
            return true
        case .labelkeep:
            labels.removeAll { $0.name != "__name__" && (try? regex.wholeMatch(in: $0.name)) == nil }
            return true
        default: break
        }
        let value = sourceLabels.map { name in labels.first { $0.name == name }?.value ?? "" }.joined(separator: separator)
        let match = try? regex.wholeMatch(in: value)
        switch action {
        case .keep: return match != nil
        case .drop: return match == nil
        default:
            guard let match, let targetLabel else { return true }
            let result = expand(replacement, match)
            labels.removeAll { $0.name == targetLabel }
            if !result.isEmpty { labels.append(Label(targetLabel, result)) }
            return true
        }
    }

    /// `$1`, `${1}` → capture groups.
    private func expand(_ template: String, _ match: Regex<AnyRegexOutput>.Match) -> String {
        var out = ""
        var characters = template[...]
        while let c = characters.popFirst() {
            guard c == "$" else { out.append(c); continue }
            var digits = ""
            if characters.first == "{" {
                characters.removeFirst()
                while let d = characters.first, d != "}" { digits.append(d); characters.removeFirst() }
                if characters.first == "}" { characters.removeFirst() }
            } else {
                while let d = characters.first, d.isNumber { digits.append(d); characters.removeFirst() }
            }
            if let group = Int(digits), group < match.output.count, let text = match.output[group].substring {
                out += text
            } else if digits.isEmpty {
                out.append("$")
            }
        }
        return out
    }
}
