/// Comparisons of secrets whose duration does not depend on where they differ.
public enum ConstantTime {
    /// Whether `a` and `b` hold the same bytes; the time taken depends only on their lengths.
    public static func equal(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        var other = b.makeIterator()
        for byte in a { difference |= byte ^ (other.next() ?? ~byte) }
        return difference == 0 && a.count == b.count
    }

    public static func equal(_ a: String, _ b: String) -> Bool { equal(a.utf8, b.utf8) }
}
