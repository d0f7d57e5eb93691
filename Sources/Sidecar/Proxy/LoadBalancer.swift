import Policy
/// Chooses the instance for one attempt among the candidates (healthy, not ejected, not yet tried).
/// Weights come from each instance's `weight` Meta.
enum LoadBalancer {
    static func pick(_ kind: LoadBalancerPolicy.Kind, from candidates: [Endpoint], hashKey: String?,
                     ring: () -> HashRing, random: inout FastRandom) -> Endpoint? {
        guard !candidates.isEmpty else { return nil }
        if candidates.count == 1 { return candidates[0] }
        switch kind {
        case .roundRobin: return smoothWeightedRoundRobin(candidates)
        case .random: return weightedRandom(candidates, random: &random)
        case .leastRequest: return powerOfTwoChoices(candidates, random: &random)
        case .ringHash:
            guard let hashKey else { return weightedRandom(candidates, random: &random) }
            return ring().lookup(hashKey, among: candidates) ?? weightedRandom(candidates, random: &random)
        }
    }

    /// nginx's smooth weighted round robin: spreads heavier instances evenly through the cycle.
    static func smoothWeightedRoundRobin(_ candidates: [Endpoint]) -> Endpoint {
        var total = 0
        var best = candidates[0]
        for endpoint in candidates {
            endpoint.currentWeight += endpoint.weight
            total += endpoint.weight
            if endpoint.currentWeight > best.currentWeight { best = endpoint }
        }
        best.currentWeight -= total
        return best
    }

    static func weightedRandom(_ candidates: [Endpoint], random: inout FastRandom) -> Endpoint {
        let total = candidates.reduce(0) { $0 + $1.weight }
        var point = random.below(total)
        for endpoint in candidates {
            if point < endpoint.weight { return endpoint }
            point -= endpoint.weight
        }
        return candidates[candidates.count - 1]
    }

    /// Two instances drawn at random; the one with fewer active requests per unit of weight wins.
    static func powerOfTwoChoices(_ candidates: [Endpoint], random: inout FastRandom) -> Endpoint {
        let a = candidates[random.below(candidates.count)]
        var b = candidates[random.below(candidates.count - 1)]
        if b === a { b = candidates[candidates.count - 1] }
        return a.activeRequests * b.weight <= b.activeRequests * a.weight ? a : b
    }
}

/// A consistent-hash ring (Ketama style): each instance owns `weight × 100` points, so a header
/// value keeps reaching the same instance while the set changes little.
struct HashRing {
    private var points: [(hash: UInt64, id: String)] = []

    init(_ endpoints: [Endpoint]) {
        for endpoint in endpoints {
            for replica in 0..<(endpoint.weight * 100) {
                points.append((Self.hash("\(endpoint.info.id)#\(replica)"), endpoint.info.id))
            }
        }
        points.sort { $0.hash < $1.hash }
    }

    /// The first candidate clockwise from the key's hash (skipping ids that are not candidates).
    func lookup(_ key: String, among candidates: [Endpoint]) -> Endpoint? {
        guard !points.isEmpty else { return nil }
        let h = Self.hash(key)
        var low = 0
        var high = points.count
        while low < high {
            let mid = (low + high) / 2
            if points[mid].hash < h { low = mid + 1 } else { high = mid }
        }
        for step in 0..<points.count {
            let id = points[(low + step) % points.count].id
            if let found = candidates.first(where: { $0.info.id == id }) { return found }
        }
        return nil
    }

    /// FNV-1a, 64-bit, with a final avalanche so nearby keys spread around the ring.
    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h &*= 0x100_0000_01b3
        }
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}
