/// Enrollment tokens: how long one may stay valid (`add-machine --valid-hours`, `token_valid_hours`).
public enum EnrollmentToken {
    /// One hour to 30 days: a token is a secret in transit, meant to be used soon.
    public static let validHours: ClosedRange<Int> = 1...720
}
