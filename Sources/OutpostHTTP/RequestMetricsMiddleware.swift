import Hummingbird
import Logging
import Metrics
import OutpostCore

/// The names of the metrics every request leaves (docs/metrics.md).
public enum RequestMetrics {
    public static let countName = "outpost_http_requests_total"
    public static let durationName = "outpost_http_request_duration_seconds"
    /// The `route` of a request no route matched: its path is the client's to choose, never a label.
    public static let unmatched = "unmatched"
    static let help = [
        countName: "HTTP requests answered, by route pattern, method and status.",
        durationName: "Seconds from a request's arrival to its response's last byte, by route pattern, method and status.",
    ]
}

/// Counts every request and times it until its response is written, by route pattern (`/v1/jobs/{id}`, never the
/// path asked for: a label per path would grow without bound), method and status; and answers it with its request
/// id in `LogContext`, so that whatever is logged meanwhile carries `request_id`. Added first, so that it sees the
/// status the error middleware answered a failure with.
public struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: (any MetricsFactory)?

    /// nil records into swift-metrics' process-wide factory (`MetricsRegistry.process` once bootstrapped).
    public init(registry: MetricsRegistry? = nil) { factory = registry?.metricsFactory }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let id = context.logger[metadataKey: "hb.request.id"]?.description
        let method = request.method.rawValue
        do {
            var response = try await LogContext.$requestID.withValue(id) { try await next(request, context) }
            let status = response.status.code
            let body = response.body
            let record = self.record
            response.body = ResponseBody(contentLength: body.contentLength) { writer in
                do {
                    try await body.write(writer)
                    record(context.endpointPath, method, status, start)
                } catch {
                    record(context.endpointPath, method, status, start)
                    throw error
                }
            }
            return response
        } catch {
            record(context.endpointPath, method, (error as? any HTTPResponseError)?.status.code ?? 500, start)
            throw error
        }
    }

    var record: @Sendable (String?, String, Int, ContinuousClock.Instant) -> Void {
        let factory = self.factory
        return { route, method, status, start in
            let route = route.flatMap { $0 == "NotFound" ? nil : $0 } ?? RequestMetrics.unmatched
            let labels = [("route", route), ("method", method), ("status", String(status))]
            let elapsed = ContinuousClock.now - start
            let f = factory ?? MetricsSystem.factory
            Counter(label: RequestMetrics.countName, dimensions: labels, factory: f).increment()
            Metrics.Timer(label: RequestMetrics.durationName, dimensions: labels, factory: f).record(duration: elapsed)
        }
    }
}
