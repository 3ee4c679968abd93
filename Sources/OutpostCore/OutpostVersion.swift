/// The release, written once: `outpost --version` and the relay's session answer both print it.
public enum OutpostVersion {
    public static let string = "0.1.0"
}
