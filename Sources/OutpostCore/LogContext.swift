/// What the work under way is about, for log lines written deep in layers that do not know it: the HTTP request
/// a server is answering and the relay job being run. Task-local, so concurrent requests and jobs never mix;
/// `--log-format json` adds them to every line's metadata (`request_id`, `job`).
public enum LogContext {
    /// Hummingbird's id of the request being answered.
    @TaskLocal public static var requestID: String?
    /// The id of the relay job being run (`relay jobs`).
    @TaskLocal public static var job: Int64?
}
