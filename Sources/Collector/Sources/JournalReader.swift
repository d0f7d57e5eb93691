import CSystemd
import Foundation
import Logging
import Telemetry

/// Reads the systemd journal through libsystemd's sd-journal and saves its cursor after each stored
/// batch, so a restart continues after the last line it acknowledged. Without a saved cursor it
/// starts at the end: only new entries are collected.
public final class JournalReader: Sendable {
    let directory: String?
    let matches: [String]
    let cursorPath: String
    let ingest: LogIngest
    let logger: Logger

    /// - Parameters:
    ///   - directory: a journal directory to read instead of the system journal.
    ///   - matches: `FIELD=value` filters, such as `_SYSTEMD_UNIT=orders.service`.
    public init(directory: String?, matches: [String], cursorPath: String, ingest: LogIngest, logger: Logger) {
        self.directory = directory
        self.matches = matches
        self.cursorPath = cursorPath
        self.ingest = ingest
        self.logger = logger
    }

    public func run() async {
        var journal: OpaquePointer?
        let opened = directory.map { sd_journal_open_directory(&journal, $0, 0) } ?? sd_journal_open(&journal, Int32(SD_JOURNAL_LOCAL_ONLY))
        guard opened >= 0, let journal else {
            logger.error("cannot open the journal", metadata: ["error": "\(String(cString: strerror(-opened)))"])
            return
        }
        defer { sd_journal_close(journal) }
        for match in matches { _ = sd_journal_add_match(journal, match, 0) }
        if let cursor = try? String(contentsOfFile: cursorPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
           !cursor.isEmpty, sd_journal_seek_cursor(journal, cursor) >= 0 {
            if sd_journal_next(journal) > 0 && sd_journal_test_cursor(journal, cursor) <= 0 {
                _ = sd_journal_previous(journal)  // the saved entry is gone: start from where it would be
            }
        } else {
            sd_journal_seek_tail(journal)
            _ = sd_journal_previous(journal)
        }
        while !Task.isCancelled {
            var entries: [(labels: [Label], entry: LogEntry)] = []
            var cursor: String?
            while entries.count < 1000, sd_journal_next(journal) > 0 {
                guard let message = Self.field(journal, "MESSAGE") else { continue }
                var usec: UInt64 = 0
                sd_journal_get_realtime_usec(journal, &usec)
                let unit = Self.field(journal, "_SYSTEMD_UNIT") ?? Self.field(journal, "SYSLOG_IDENTIFIER") ?? "unknown"
                var labels = [Label("job", "systemd-journal"), Label("unit", unit)]
                if let priority = Self.field(journal, "PRIORITY").flatMap(Int.init), Self.levels.indices.contains(priority) {
                    labels.append(Label("level", Self.levels[priority]))
                }
                entries.append((labels, LogEntry(timestampNs: Int64(usec) * 1000, line: message)))
                var raw: UnsafeMutablePointer<CChar>?
                if sd_journal_get_cursor(journal, &raw) >= 0, let raw {
                    cursor = String(cString: raw)
                    free(raw)
                }
            }
            if let cursor {
                var merger = StreamMerger()
                for (labels, entry) in entries { merger.add(labels: labels, entry: entry) }
                while !Task.isCancelled {
                    let outcome = await ingest.ingest(merger.streams, tenant: "fake", source: "journal")
                    if outcome.status != 500 && outcome.status != 429 { break }
                    logger.warning("journal entries not stored; retrying", metadata: ["reason": "\(outcome.message)"])
                    try? await Task.sleep(for: .seconds(1))
                }
                do { try AtomicFile.write(cursor, to: cursorPath) } catch {
                    logger.error("cannot save the journal cursor", metadata: ["error": "\(error)"])
                }
            } else {
                _ = sd_journal_process(journal)
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// syslog priorities 0…7.
    static let levels = ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"]

    private static func field(_ journal: OpaquePointer, _ name: String) -> String? {
        var data: UnsafeRawPointer?
        var length = 0
        guard sd_journal_get_data(journal, name, &data, &length) >= 0, let data else { return nil }
        let bytes = UnsafeRawBufferPointer(start: data, count: length)
        guard let eq = bytes.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        return String(decoding: bytes[(eq + 1)...], as: UTF8.self)
    }
}
