/// The parts of DNS's wire format (RFC 1035) the registry's DNS interface reads and writes.
enum DNSType: UInt16, Sendable {
    case a = 1, ns = 2, cname = 5, soa = 6, txt = 16, aaaa = 28, srv = 33, opt = 41, any = 255
}

enum DNSRcode: UInt8, Sendable {
    case noError = 0, formatError = 1, serverFailure = 2, nameError = 3, notImplemented = 4, refused = 5
}

/// A parsed query: its ID, flags that the answer echoes, the one question, and EDNS0's buffer size.
struct DNSQuery: Sendable {
    let id: UInt16
    let recursionDesired: Bool
    let name: [String]
    let type: UInt16
    let qclass: UInt16
    /// The UDP payload size the client accepts (EDNS0 `OPT`), nil without EDNS.
    let ednsBufferSize: Int?

    struct Malformed: Error {}

    /// The largest query read; anything longer is not a query this server answers.
    static let maxSize = 512 + 4096

    /// Reads a query message; throws for anything that is not one question of class IN or ANY.
    init(_ bytes: [UInt8]) throws(Malformed) {
        guard bytes.count >= 12, bytes.count <= Self.maxSize else { throw Malformed() }
        var reader = DNSReader(bytes: bytes, position: 0)
        id = try reader.u16()
        let flags = try reader.u16()
        guard flags & 0x8000 == 0 else { throw Malformed() }  // a response, not a query
        recursionDesired = flags & 0x0100 != 0
        let questions = try reader.u16(), answers = try reader.u16(), authorities = try reader.u16()
        let additionals = try reader.u16()
        guard questions == 1, answers == 0, authorities == 0 else { throw Malformed() }
        name = try reader.name()
        type = try reader.u16()
        qclass = try reader.u16()
        var buffer: Int?
        for _ in 0..<additionals {
            _ = try reader.name()
            let rrType = try reader.u16(), rrClass = try reader.u16()
            _ = try reader.u32()
            let length = Int(try reader.u16())
            try reader.skip(length)
            if rrType == DNSType.opt.rawValue { buffer = max(512, Int(rrClass)) }
        }
        ednsBufferSize = buffer
    }
}

/// Reads big-endian fields and (compressed) names from a message.
private struct DNSReader {
    let bytes: [UInt8]
    var position: Int

    mutating func u16() throws(DNSQuery.Malformed) -> UInt16 {
        guard position + 2 <= bytes.count else { throw DNSQuery.Malformed() }
        defer { position += 2 }
        return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }

    mutating func u32() throws(DNSQuery.Malformed) -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func skip(_ count: Int) throws(DNSQuery.Malformed) {
        guard position + count <= bytes.count else { throw DNSQuery.Malformed() }
        position += count
    }

    /// A name's labels; compression pointers are followed (at most 16 jumps, so loops end).
    mutating func name() throws(DNSQuery.Malformed) -> [String] {
        var labels: [String] = []
        var cursor = position
        var jumped = false
        var jumps = 0
        var length = 0
        while true {
            guard cursor < bytes.count else { throw DNSQuery.Malformed() }
            let count = Int(bytes[cursor])
            if count & 0xC0 == 0xC0 {
                guard cursor + 1 < bytes.count, jumps < 16 else { throw DNSQuery.Malformed() }
                if !jumped { position = cursor + 2 }
                jumped = true
                jumps += 1
                cursor = (count & 0x3F) << 8 | Int(bytes[cursor + 1])
                continue
            }
            guard count & 0xC0 == 0 else { throw DNSQuery.Malformed() }
            cursor += 1
            if count == 0 { break }
            guard cursor + count <= bytes.count else { throw DNSQuery.Malformed() }
            length += count + 1
            guard length <= 255 else { throw DNSQuery.Malformed() }
            labels.append(String(decoding: bytes[cursor..<cursor + count], as: UTF8.self))
            cursor += count
        }
        if !jumped { position = cursor }
        return labels
    }
}

/// One resource record of an answer.
struct DNSRecord: Sendable, Equatable {
    enum Data: Sendable, Equatable {
        case a([UInt8])
        case aaaa([UInt8])
        case cname(String)
        case srv(priority: UInt16, weight: UInt16, port: UInt16, target: String)
        case soa(primary: String, mailbox: String, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32)
        case ns(String)
        case txt([String])
    }

    let name: String
    let ttl: UInt32
    let data: Data

    var type: DNSType {
        switch data {
        case .a: .a
        case .aaaa: .aaaa
        case .cname: .cname
        case .srv: .srv
        case .soa: .soa
        case .ns: .ns
        case .txt: .txt
        }
    }
}

/// An answer to write: its code and sections.
struct DNSAnswer: Sendable {
    var rcode: DNSRcode = .noError
    var answers: [DNSRecord] = []
    var authority: [DNSRecord] = []
    var additional: [DNSRecord] = []
    var truncated = false

    /// The response message for `query`, with names compressed against earlier ones.
    func encode(for query: DNSQuery, questionName: String) -> [UInt8] {
        var writer = DNSWriter()
        writer.u16(query.id)
        var flags: UInt16 = 0x8000 | 0x0400  // response, authoritative
        if truncated { flags |= 0x0200 }
        if query.recursionDesired { flags |= 0x0100 }
        flags |= UInt16(rcode.rawValue)
        writer.u16(flags)
        writer.u16(1)
        writer.u16(UInt16(answers.count))
        writer.u16(UInt16(authority.count))
        writer.u16(UInt16(additional.count + (query.ednsBufferSize != nil ? 1 : 0)))
        writer.name(questionName)
        writer.u16(query.type)
        writer.u16(query.qclass)
        for record in answers + authority + additional { writer.record(record) }
        if query.ednsBufferSize != nil {
            writer.bytes.append(0)  // root name
            writer.u16(DNSType.opt.rawValue)
            writer.u16(UInt16(DNSServer.ednsBufferSize))
            writer.u32(0)
            writer.u16(0)
        }
        return writer.bytes
    }
}

/// Writes a message, compressing names (RFC 1035 4.1.4) against the suffixes already written.
private struct DNSWriter {
    var bytes: [UInt8] = []
    private var offsets: [String: Int] = [:]

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    mutating func u32(_ value: UInt32) {
        u16(UInt16(value >> 16))
        u16(UInt16(value & 0xFFFF))
    }

    mutating func name(_ name: String) {
        var labels = name.split(separator: ".", omittingEmptySubsequences: true).map(String.init)
        while !labels.isEmpty {
            let suffix = labels.joined(separator: ".").lowercased()
            if let offset = offsets[suffix], offset < 0x3FFF {
                u16(0xC000 | UInt16(offset))
                return
            }
            if bytes.count < 0x3FFF { offsets[suffix] = bytes.count }
            let label = Array(labels.removeFirst().utf8.prefix(63))
            bytes.append(UInt8(label.count))
            bytes += label
        }
        bytes.append(0)
    }

    mutating func record(_ record: DNSRecord) {
        name(record.name)
        u16(record.type.rawValue)
        u16(1)  // IN
        u32(record.ttl)
        let lengthAt = bytes.count
        u16(0)
        switch record.data {
        case .a(let address), .aaaa(let address):
            bytes += address
        case .cname(let target), .ns(let target):
            name(target)
        case .srv(let priority, let weight, let port, let target):
            u16(priority)
            u16(weight)
            u16(port)
            name(target)
        case .soa(let primary, let mailbox, let serial, let refresh, let retry, let expire, let minimum):
            name(primary)
            name(mailbox)
            for value in [serial, refresh, retry, expire, minimum] { u32(value) }
        case .txt(let strings):
            for string in strings {
                let text = Array(string.utf8.prefix(255))
                bytes.append(UInt8(text.count))
                bytes += text
            }
        }
        let length = bytes.count - lengthAt - 2
        bytes[lengthAt] = UInt8(length >> 8)
        bytes[lengthAt + 1] = UInt8(length & 0xFF)
    }
}
