import Foundation

/// How long recovery points are kept on each tier (issue 11). The relay keeps points for a short term (the
/// last N days and/or the newest N); the vault keeps grandfather-father-son points, the newest of each day,
/// week, month and year for the last N of each (MARS's ranges). Nil is no rule; a tier with no rule keeps
/// everything, so an unset policy never deletes anything. A point is kept when any rule keeps it.
public struct RetentionPolicy: Sendable, Equatable, Codable {
    public var relayDays: Int?
    public var relayLast: Int?
    public var vaultDaily: Int?
    public var vaultWeekly: Int?
    public var vaultMonthly: Int?
    public var vaultYearly: Int?

    public init(
        relayDays: Int? = nil, relayLast: Int? = nil, vaultDaily: Int? = nil, vaultWeekly: Int? = nil, vaultMonthly: Int? = nil,
        vaultYearly: Int? = nil
    ) {
        self.relayDays = relayDays
        self.relayLast = relayLast
        self.vaultDaily = vaultDaily
        self.vaultWeekly = vaultWeekly
        self.vaultMonthly = vaultMonthly
        self.vaultYearly = vaultYearly
    }

    /// One value of a policy, with its allowed range and its names in relay.toml and on the command line.
    public enum Setting: String, CaseIterable, Sendable, Codable {
        case relayDays, relayLast, vaultDaily, vaultWeekly, vaultMonthly, vaultYearly

        public var range: ClosedRange<Int> {
            switch self {
            case .relayDays, .relayLast: 1...9999
            case .vaultDaily: 7...9999
            case .vaultWeekly: 4...5163
            case .vaultMonthly: 3...1188
            case .vaultYearly: 1...99
            }
        }

        public var unit: String {
            switch self {
            case .relayDays, .vaultDaily: "days"
            case .relayLast: "recovery points"
            case .vaultWeekly: "weeks"
            case .vaultMonthly: "months"
            case .vaultYearly: "years"
            }
        }

        /// The key in relay.toml's `[retention]` table and in the index: `relay_days`.
        public var key: String {
            rawValue.reduce(into: "") { out, c in out += c.isUppercase ? "_" + c.lowercased() : String(c) }
        }

        /// The command-line option: `--relay-days`.
        public var flag: String { "--" + key.replacingOccurrences(of: "_", with: "-") }

        public var isVaultTier: Bool { self != .relayDays && self != .relayLast }

        var keyPath: WritableKeyPath<RetentionPolicy, Int?> {
            switch self {
            case .relayDays: \.relayDays
            case .relayLast: \.relayLast
            case .vaultDaily: \.vaultDaily
            case .vaultWeekly: \.vaultWeekly
            case .vaultMonthly: \.vaultMonthly
            case .vaultYearly: \.vaultYearly
            }
        }
    }

    public subscript(_ setting: Setting) -> Int? {
        get { self[keyPath: setting.keyPath] }
        set { self[keyPath: setting.keyPath] = newValue }
    }

    /// MARS keeps at most this many points in the vault per protected item: the vault counts added up.
    public static let maximumVaultPoints = 9999

    /// How a message names the settings: as command-line options or as relay.toml keys.
    public enum Naming: Sendable { case flags, keys }

    /// Refuses a value outside its range, or vault counts that add up to more than 9999 points, with a message
    /// that names the setting, the value and the range (exit 64).
    public func validate(naming: Naming = .flags) throws {
        func name(_ s: Setting) -> String { naming == .flags ? s.flag : s.key }
        for s in Setting.allCases {
            guard let v = self[s], !s.range.contains(v) else { continue }
            throw OutpostError(.usage, "\(name(s)) must be \(s.range.lowerBound) to \(s.range.upperBound) \(s.unit), not \(v)")
        }
        let vault = Setting.allCases.filter(\.isVaultTier).compactMap { s in self[s].map { (s, $0) } }
        let total = vault.reduce(0) { $0 + $1.1 }
        if total > Self.maximumVaultPoints {
            let parts = vault.map { "\(name($0.0)) \($0.1)" }.joined(separator: " + ")
            throw OutpostError(
                .usage,
                "the vault tier keeps at most \(Self.maximumVaultPoints) recovery points, not \(total) (\(parts)); lower one of them")
        }
    }

    public var isEmpty: Bool { Setting.allCases.allSatisfy { self[$0] == nil } }
    public var hasRelayRule: Bool { relayDays != nil || relayLast != nil }
    public var hasVaultRule: Bool { vaultDaily != nil || vaultWeekly != nil || vaultMonthly != nil || vaultYearly != nil }

    /// Each value of `self`, or where `self` has none, the fallback's: a machine's values over the relay's.
    public func over(_ fallback: RetentionPolicy) -> RetentionPolicy {
        var out = fallback
        for s in Setting.allCases where self[s] != nil { out[s] = self[s] }
        return out
    }
}

/// A recovery point as retention sees it.
public struct RetentionCandidate: Sendable, Equatable {
    public var id: String
    public var finishedAt: Date
    public var keepUntil: Date?
    public init(id: String, finishedAt: Date, keepUntil: Date? = nil) {
        self.id = id
        self.finishedAt = finishedAt
        self.keepUntil = keepUntil
    }
}

/// The vault tier's kinds of period.
public enum RetentionPeriod: String, Sendable, CaseIterable, Codable {
    case daily, weekly, monthly, yearly

    var component: Calendar.Component {
        switch self {
        case .daily: .day
        case .weekly: .weekOfYear
        case .monthly: .month
        case .yearly: .year
        }
    }
}

/// Why a point stays on a tier.
public enum RetentionReason: Sendable, Hashable, CustomStringConvertible {
    /// `backup --keep-until`: kept on both tiers until then.
    case keepUntil(Date)
    /// The machine's newest point always stays, so a machine that stopped backing up keeps its last backup.
    case newest
    /// The tier has no rule, and a tier with no rule keeps everything.
    case noRule
    case relayDays(Int)
    case relayLast(Int)
    /// The newest point of that period (its label: 2026-11-30, 2026-W48, 2026-11, 2026).
    case period(RetentionPeriod, String)

    public var description: String {
        switch self {
        case .keepUntil(let d): "keep-until \(d.formatted(.iso8601))"
        case .newest: "newest point of the machine"
        case .noRule: "no rule for this tier"
        case .relayDays(let n): "younger than \(n) days (relay_days)"
        case .relayLast(let n): "among the newest \(n) (relay_last)"
        case .period(.daily, let l): "newest of day \(l) (vault_daily)"
        case .period(.weekly, let l): "newest of week \(l) (vault_weekly)"
        case .period(.monthly, let l): "newest of month \(l) (vault_monthly)"
        case .period(.yearly, let l): "newest of year \(l) (vault_yearly)"
        }
    }
}

/// A tier's verdict on one point: kept by these reasons, or (none) expired.
public struct RetentionDecision: Sendable, Equatable {
    public var id: String
    public var keptBy: [RetentionReason]
    public var isKept: Bool { !keptBy.isEmpty }
}

extension RetentionPolicy {
    /// Which points the relay keeps, in the order given: younger than `relayDays`, among the newest
    /// `relayLast`, the newest, or kept until a later date. Days are 24-hour spans back from `now`.
    public func relayTier(_ points: [RetentionCandidate], now: Date) -> [RetentionDecision] {
        var reasons = Self.alwaysKept(points, now: now)
        if !hasRelayRule { for i in points.indices { reasons[i].append(.noRule) } }
        if let days = relayDays {
            let cutoff = now.addingTimeInterval(-Double(days) * 86400)
            for i in points.indices where points[i].finishedAt > cutoff { reasons[i].append(.relayDays(days)) }
        }
        if let last = relayLast {
            for i in Self.newestFirst(points).prefix(last) { reasons[i].append(.relayLast(last)) }
        }
        return zip(points, reasons).map { RetentionDecision(id: $0.id, keptBy: $1) }
    }

    /// Which points the vault keeps, in the order given: for each kind of period with a rule, the newest point
    /// of each of the last N periods (the current one included, in `timeZone`; ISO weeks start on Monday).
    public func vaultTier(_ points: [RetentionCandidate], now: Date, timeZone: TimeZone) -> [RetentionDecision] {
        var reasons = Self.alwaysKept(points, now: now)
        if !hasVaultRule { for i in points.indices { reasons[i].append(.noRule) } }
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = timeZone
        let newestFirst = Self.newestFirst(points)
        let rules: [(RetentionPeriod, Int?)] = [(.daily, vaultDaily), (.weekly, vaultWeekly), (.monthly, vaultMonthly), (.yearly, vaultYearly)]
        for case (let period, let count?) in rules where count > 0 {
            let unit = period.component
            // The oldest period still kept: the start of the one N - 1 periods before the current one (taken
            // again as a period start, which stays right across daylight-saving changes).
            guard let current = calendar.dateInterval(of: unit, for: now)?.start,
                let back = calendar.date(byAdding: unit, value: -(count - 1), to: current),
                let oldest = calendar.dateInterval(of: unit, for: back)?.start
            else { continue }
            var seen = Set<Date>()
            for i in newestFirst {
                guard let start = calendar.dateInterval(of: unit, for: points[i].finishedAt)?.start, start >= oldest else { continue }
                // Newest first: the first point met in a period is its newest.
                if seen.insert(start).inserted { reasons[i].append(.period(period, Self.label(start, period, calendar))) }
            }
        }
        return zip(points, reasons).map { RetentionDecision(id: $0.id, keptBy: $1) }
    }

    /// What keeps a point on either tier whatever the rules: a keep-until date still ahead, being the newest.
    static func alwaysKept(_ points: [RetentionCandidate], now: Date) -> [[RetentionReason]] {
        var reasons = points.map { p -> [RetentionReason] in
            if let k = p.keepUntil, k > now { return [.keepUntil(k)] }
            return []
        }
        if let newest = newestFirst(points).first { reasons[newest].append(.newest) }
        return reasons
    }

    /// Indices, newest first (by finish time, then id, as the store orders them).
    static func newestFirst(_ points: [RetentionCandidate]) -> [Int] {
        points.indices.sorted { a, b in
            points[a].finishedAt != points[b].finishedAt ? points[a].finishedAt > points[b].finishedAt : points[a].id > points[b].id
        }
    }

    static func label(_ start: Date, _ period: RetentionPeriod, _ calendar: Calendar) -> String {
        let c = calendar.dateComponents([.year, .month, .day, .weekOfYear, .yearForWeekOfYear], from: start)
        let y = c.year ?? 0, m = c.month ?? 0, d = c.day ?? 0
        switch period {
        case .daily: return String(format: "%04d-%02d-%02d", y, m, d)
        case .weekly: return String(format: "%04d-W%02d", c.yearForWeekOfYear ?? y, c.weekOfYear ?? 0)
        case .monthly: return String(format: "%04d-%02d", y, m)
        case .yearly: return String(format: "%04d", y)
        }
    }
}

extension RetentionPolicy {
    /// `backup --keep-until YYYY-MM-DD`: the first instant after that day in `timeZone` (the point is kept
    /// through the whole day). Refused, with the reason, when that day is already over.
    public static func keepUntil(_ text: String, now: Date = Date(), timeZone: TimeZone = .current) throws -> Date {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        let shapeOK = parts.count == 3 && parts[0].count == 4 && parts[1].count == 2 && parts[2].count == 2
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        guard shapeOK, parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), y >= 1970,
            let start = calendar.date(from: DateComponents(year: y, month: m, day: d)),
            calendar.component(.year, from: start) == y, calendar.component(.month, from: start) == m,
            calendar.component(.day, from: start) == d,
            let end = calendar.date(byAdding: .day, value: 1, to: start)
        else {
            throw OutpostError(.usage, "--keep-until takes a date as YYYY-MM-DD, e.g. 2027-03-31, not \(text.debugDescription)")
        }
        guard end > now else {
            throw OutpostError(
                .usage, "--keep-until \(text) is in the past (that day ended at \(end.formatted(.iso8601))); give today or a later date")
        }
        return end
    }
}
