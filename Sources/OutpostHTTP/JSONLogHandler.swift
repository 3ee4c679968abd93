import Foundation
import Logging
import OutpostCore
import Synchronization

/// `--log-format json`: one JSON object per line on standard error, `{"time", "level", "label", "message",
/// "metadata"}`, for log collectors that parse rather than grep. The time is UTC with milliseconds; metadata keeps
/// its nesting (dictionaries and arrays), other values are their text. The request and job ids come from
/// `LogContext` through the metadata provider.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let sink: @Sendable (String) -> Void

    /// `sink` takes each line without its newline (tests); the default writes to standard error.
    public init(
        label: String, metadataProvider: Logger.MetadataProvider? = JSONLogHandler.contextProvider,
        sink: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError
    ) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadataProvider?.get() ?? [:]
        all.merge(metadata) { _, new in new }
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        if let error = event.error { all["error"] = "\(error)" }
        sink(Self.line(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all))
    }

    /// The request and job under way (`LogContext`), as `request_id` and `job`.
    public static let contextProvider = Logger.MetadataProvider {
        var m: Logger.Metadata = [:]
        if let id = LogContext.requestID { m["request_id"] = .string(id) }
        if let job = LogContext.job { m["job"] = .stringConvertible(job) }
        return m
    }

    /// One log line: keys in a fixed order, metadata keys sorted, no newline inside (JSON escapes them).
    public static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var out = "{\"time\":"
        appendString(time.formatted(timeFormat), to: &out)
        out += ",\"level\":"
        appendString(level.rawValue, to: &out)
        out += ",\"label\":"
        appendString(label, to: &out)
        out += ",\"message\":"
        appendString(message, to: &out)
        out += ",\"metadata\":"
        append(.dictionary(metadata), to: &out)
        out += "}"
        return out
    }

    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    static func append(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let s): appendString(s, to: &out)
        case .stringConvertible(let c): appendString(c.description, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                append(v, to: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, key) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                appendString(key, to: &out)
                out += ":"
                append(d[key]!, to: &out)
            }
            out += "}"
        }
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped (RFC 8259 §7).
    static func appendString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029:
                out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// Whole lines, one write each under a lock, so that lines of concurrent tasks never interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        lock.withLock { _ in FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }
    private static let lock = Mutex(())
}

/// How a long-running command writes its log: `text` (swift-log's plain lines, the default) or `json`.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}
