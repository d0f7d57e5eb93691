import Foundation
import TrellisCore

/// The machine as `/v1/agent/host` reports it: gopsutil's JSON shapes (`Memory`, `CPU`, `Host`,
/// `Disk`), read from `/proc`, `uname` and `statvfs`.
enum HostInfo {
    static func collect(dataDirectory: String) -> JSON {
        var errors: [JSON] = []
        let memory = Self.memory(&errors)
        let body = JSONObject([
            ("Memory", memory),
            ("CPU", .array(cpus())),
            ("Host", host()),
            ("Disk", disk(dataDirectory, &errors)),
            ("CollectionTime", .int(Int64(Date().timeIntervalSince1970 * 1e9))),
            ("Errors", errors.isEmpty ? .null : .array(errors)),
        ])
        return .object(body)
    }

    /// `/proc/meminfo` values in bytes, by field name.
    private static func memory(_ errors: inout [JSON]) -> JSON {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else {
            errors.append(.string("memory: cannot read /proc/meminfo"))
            return .null
        }
        var kib: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let value = UInt64(parts[1]) { kib[String(parts[0])] = value }
        }
        let total = (kib["MemTotal"] ?? 0) * 1024, free = (kib["MemFree"] ?? 0) * 1024
        let available = (kib["MemAvailable"] ?? 0) * 1024
        let buffers = (kib["Buffers"] ?? 0) * 1024, cached = (kib["Cached"] ?? 0) * 1024
        let used = total > available ? total - available : 0
        return .object(JSONObject([
            ("total", .unsigned(total)), ("available", .unsigned(available)), ("used", .unsigned(used)),
            ("usedPercent", .double(total > 0 ? Double(used) / Double(total) * 100 : 0)),
            ("free", .unsigned(free)), ("buffers", .unsigned(buffers)), ("cached", .unsigned(cached)),
        ]))
    }

    /// One entry per processor of `/proc/cpuinfo`.
    private static func cpus() -> [JSON] {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        return text.components(separatedBy: "\n\n").compactMap { block -> JSON? in
            var fields: [String: String] = [:]
            for line in block.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon].trimmingCharacters(in: .whitespaces)] =
                    line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            guard let processor = fields["processor"].flatMap({ Int64($0) }) else { return nil }
            return .object(JSONObject([
                ("cpu", .int(processor)), ("vendorId", .string(fields["vendor_id"] ?? "")),
                ("family", .string(fields["cpu family"] ?? "")), ("model", .string(fields["model"] ?? "")),
                ("stepping", .int(Int64(fields["stepping"] ?? "") ?? 0)), ("physicalId", .string(fields["physical id"] ?? "")),
                ("coreId", .string(fields["core id"] ?? "")), ("cores", .int(1)),
                ("modelName", .string(fields["model name"] ?? "")), ("mhz", .double(Double(fields["cpu MHz"] ?? "") ?? 0)),
                ("cacheSize", .int(Int64(fields["cache size"]?.split(separator: " ").first ?? "") ?? 0)),
                ("flags", .strings((fields["flags"] ?? "").split(separator: " ").map(String.init))),
                ("microcode", .string(fields["microcode"] ?? "")),
            ]))
        }
    }

    private static func host() -> JSON {
        var name = utsname()
        uname(&name)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let uptime = (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))
            .flatMap { Double($0.split(separator: " ").first ?? "") } ?? 0
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        func osRelease(_ key: String) -> String {
            for line in release.split(separator: "\n") where line.hasPrefix(key + "=") {
                return line.dropFirst(key.count + 1).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return ""
        }
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { Int($0) != nil }.count ?? 0
        let hostID = ((try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return .object(JSONObject([
            ("hostname", .string(ProcessInfo.processInfo.hostName)), ("uptime", .int(Int64(uptime))),
            ("bootTime", .int(Int64(Date().timeIntervalSince1970 - uptime))), ("procs", .int(Int64(procs))),
            ("os", .string(field(name.sysname).lowercased())), ("platform", .string(osRelease("ID"))),
            ("platformFamily", .string(osRelease("ID_LIKE").isEmpty ? osRelease("ID") : osRelease("ID_LIKE"))),
            ("platformVersion", .string(osRelease("VERSION_ID"))), ("kernelVersion", .string(field(name.release))),
            ("kernelArch", .string(field(name.machine))), ("virtualizationSystem", .string("")),
            ("virtualizationRole", .string("")), ("hostId", .string(hostID)),
        ]))
    }

    /// Usage of the file system holding the data directory.
    private static func disk(_ path: String, _ errors: inout [JSON]) -> JSON {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else {
            errors.append(.string("disk: cannot stat \(path)"))
            return .null
        }
        let block = UInt64(stats.f_frsize)
        let total = UInt64(stats.f_blocks) * block, free = UInt64(stats.f_bavail) * block
        let used = total - UInt64(stats.f_bfree) * block
        let inodes = UInt64(stats.f_files), inodesFree = UInt64(stats.f_ffree)
        return .object(JSONObject([
            ("path", .string(path)), ("fstype", .string("")), ("total", .unsigned(total)), ("free", .unsigned(free)),
            ("used", .unsigned(used)), ("usedPercent", .double(total > 0 ? Double(used) / Double(used + free) * 100 : 0)),
            ("inodesTotal", .unsigned(inodes)), ("inodesUsed", .unsigned(inodes - inodesFree)),
            ("inodesFree", .unsigned(inodesFree)),
            ("inodesUsedPercent", .double(inodes > 0 ? Double(inodes - inodesFree) / Double(inodes) * 100 : 0)),
        ]))
    }
}
