/// An HTTP proxy for reaching the vault (MARS: direct or through a proxy with optional credentials).
public struct ProxyConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?
    public init(host: String, port: Int, user: String? = nil, password: String? = nil) {
        self.host = host; self.port = port; self.user = user; self.password = password
    }
}
