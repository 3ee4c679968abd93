import Foundation
import Metrics
import Prometheus
import Synchronization

/// The metrics a process records as it works (swift-metrics counters and timers), kept in Prometheus form by
/// swift-prometheus (docs/metrics.md). Counters and histograms live here from the process's start; values read
/// from an index at scrape time are a `MetricsSnapshot` instead.
public final class MetricsRegistry: Sendable {
    let prometheus = PrometheusCollectorRegistry()
    /// The `# HELP` text of each name; fixed before the first value is recorded (the registry refuses a second text).
    let help: Mutex<[String: String]>

    public init(help: [String: String] = [:]) {
        self.help = Mutex(RequestMetrics.help.merging(help) { _, new in new })
    }

    /// What swift-metrics records into once `bootstrap()` ran: `relay serve` and `vault serve` bootstrap it when
    /// a metrics listener is set, and nothing is recorded (swift-metrics' no-op) otherwise.
    public static let process = MetricsRegistry()

    /// Request latencies, from 5 ms to the 5 minutes a slow upload may take.
    static let requestBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    /// Makes swift-metrics' `Counter`, `Timer` and the rest record into this registry, with `help` for their
    /// names; once per process, before anything is recorded.
    public func bootstrap(help more: [String: String] = [:]) {
        help.withLock { $0.merge(more) { _, new in new } }
        MetricsSystem.bootstrap(metricsFactory)
    }

    /// The factory of this registry, for code that records into it without the process-wide bootstrap (tests).
    public var metricsFactory: any MetricsFactory {
        HelpfulFactory(registry: prometheus, buckets: [RequestMetrics.durationName: Self.requestBuckets]) { name in
            self.help.withLock { $0[name] ?? "" }
        }
    }

    /// The Prometheus text exposition (version 0.0.4) of everything recorded.
    public func exposition() -> [UInt8] { prometheus.emitToBuffer() }
}

/// swift-prometheus's factory, but with each name's `# HELP` line (`PrometheusMetricsFactory` leaves it empty).
struct HelpfulFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    /// Histogram buckets of a timer by name; others get swift-prometheus's defaults.
    let buckets: [String: [Duration]]
    let help: @Sendable (String) -> String

    func descriptor(_ name: String) -> MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help(name)) }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(
            descriptor: descriptor(label), labels: dimensions, buckets: PrometheusMetricsFactory().defaultValueHistogramBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            descriptor: descriptor(label), labels: dimensions,
            buckets: buckets[label] ?? PrometheusMetricsFactory().defaultDurationHistogramBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        if let h = handler as? ValueHistogram { registry.unregisterValueHistogram(h) }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
    }
}

/// Values computed at scrape time (from the relay's index, the disk), in a registry of their own made for each
/// scrape: a series whose subject went away (a removed machine) goes with it, and nothing needs keeping up to
/// date between scrapes. Names must not be the live registry's.
public struct MetricsSnapshot {
    let registry = PrometheusCollectorRegistry()
    /// Histograms known as counts already (`histogram(_:_:buckets:labels:cumulativeCounts:sum:count:)`), which
    /// swift-prometheus cannot hold (its histograms only record observations): emitted after the registry's.
    let aggregated = AggregatedHistograms()

    public init() {}

    public func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
        registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels).set(value)
    }

    /// A counter whose value is known whole (a count of rows that only grows).
    public func counter(_ name: String, _ help: String, _ value: Int64, labels: [(String, String)] = []) {
        registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels).increment(by: max(0, value))
    }

    /// A histogram of `values` (each one observation).
    public func histogram(_ name: String, _ help: String, buckets: [Double], labels: [(String, String)] = [], values: [Double]) {
        let h = registry.makeValueHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
        for v in values { h.record(v) }
    }

    /// A histogram known as aggregates: the cumulative count of observations at most each upper bound of
    /// `buckets` (in their order), their sum and their count (the `+Inf` bucket). Emitted in the registry's text
    /// format, one `# HELP` and `# TYPE` per name; a name must not be used with the registry's own metrics too.
    public func histogram(
        _ name: String, _ help: String, buckets: [Double], labels: [(String, String)] = [], cumulativeCounts: [Int64], sum: Double,
        count: Int64
    ) {
        var series = ""
        func line(_ suffix: String, _ labels: [(String, String)], _ value: String) {
            series += name + suffix
            if !labels.isEmpty {
                series += "{" + labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",") + "}"
            }
            series += " " + value + "\n"
        }
        for (bound, n) in zip(buckets, cumulativeCounts) { line("_bucket", labels + [("le", bound.description)], "\(n)") }
        line("_bucket", labels + [("le", "+Inf")], "\(count)")
        line("_sum", labels, sum.description)
        line("_count", labels, "\(count)")
        aggregated.add(name, help, series)
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() + aggregated.text().utf8 }

    /// A label value as the text format writes it.
    static func escaped(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}

/// The pre-aggregated histograms of a snapshot, by name in the order they came, each name's series together.
final class AggregatedHistograms {
    private var families: [(name: String, help: String, series: String)] = []

    func add(_ name: String, _ help: String, _ series: String) {
        if let i = families.firstIndex(where: { $0.name == name }) {
            precondition(families[i].help == help, "the histogram \(name) has two help texts")
            families[i].series += series
        } else {
            families.append((name, help, series))
        }
    }

    func text() -> String {
        families.map { f in
            (f.help.isEmpty
                ? "" : "# HELP \(f.name) \(f.help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: " "))\n")
                + "# TYPE \(f.name) histogram\n" + f.series
        }.joined()
    }
}
