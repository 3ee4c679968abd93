import Foundation

/// The few XML documents S3 answers with (ListBucketResult, InitiateMultipartUploadResult, Error), read into a
/// small tree. A reader of its own rather than FoundationXML: that module brings CoreFoundation (and libxml2 at run
/// time) into every target that depends on this one. It reads elements, text, the five named entities and
/// character references, CDATA; it skips the XML declaration, comments and a DOCTYPE, and keeps no attributes.
/// Namespace prefixes are dropped from names. Anything else malformed reads as nil.
final class S3XMLNode {
    let name: String
    var text = ""
    var children: [S3XMLNode] = []

    init(name: String) { self.name = name }

    /// The first child named `name`.
    func child(_ name: String) -> S3XMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [S3XMLNode] { children.filter { $0.name == name } }
    /// The text of the first child named `name`, trimmed.
    func value(_ name: String) -> String? { child(name)?.text.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// The document's root element, or nil when `bytes` is not a well-formed document of one element.
    static func parse(_ bytes: [UInt8]) -> S3XMLNode? {
        let lt = UInt8(ascii: "<"), gt = UInt8(ascii: ">")
        var i = 0
        var stack: [S3XMLNode] = []
        var root: S3XMLNode?
        func startsWith(_ s: String) -> Bool {
            let u = Array(s.utf8)
            return i + u.count <= bytes.count && Array(bytes[i..<(i + u.count)]) == u
        }
        /// The index just past the next `end` at or after `from`, or nil.
        func skip(to end: String, from: Int) -> Int? {
            let u = Array(end.utf8)
            var j = from
            while j + u.count <= bytes.count {
                if bytes[j] == u[0] && Array(bytes[j..<(j + u.count)]) == u { return j + u.count }
                j += 1
            }
            return nil
        }
        while i < bytes.count {
            if bytes[i] != lt {
                var j = i
                while j < bytes.count && bytes[j] != lt { j += 1 }
                guard let text = decodeEntities(bytes[i..<j]) else { return nil }
                if let top = stack.last {
                    top.text += text
                } else if !text.allSatisfy(\.isWhitespace) {
                    return nil
                }
                i = j
            } else if startsWith("<?") {
                guard let j = skip(to: "?>", from: i + 2) else { return nil }
                i = j
            } else if startsWith("<!--") {
                guard let j = skip(to: "-->", from: i + 4) else { return nil }
                i = j
            } else if startsWith("<![CDATA[") {
                guard let j = skip(to: "]]>", from: i + 9), let top = stack.last else { return nil }
                top.text += String(decoding: bytes[(i + 9)..<(j - 3)], as: UTF8.self)
                i = j
            } else if startsWith("<!") {
                guard let j = skip(to: ">", from: i + 2) else { return nil }
                i = j
            } else {
                // A tag: up to the `>` outside quoted attribute values.
                var j = i + 1
                var quote: UInt8?
                while j < bytes.count && !(bytes[j] == gt && quote == nil) {
                    if let q = quote {
                        if bytes[j] == q { quote = nil }
                    } else if bytes[j] == UInt8(ascii: "\"") || bytes[j] == UInt8(ascii: "'") {
                        quote = bytes[j]
                    }
                    j += 1
                }
                guard j < bytes.count else { return nil }
                var inner = Array(bytes[(i + 1)..<j])
                i = j + 1
                let closing = inner.first == UInt8(ascii: "/")
                if closing { inner.removeFirst() }
                let selfClosing = !closing && inner.last == UInt8(ascii: "/")
                if selfClosing { inner.removeLast() }
                let rawName = inner.prefix { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d || $0 == UInt8(ascii: "/")) }
                guard !rawName.isEmpty else { return nil }
                let full = String(decoding: rawName, as: UTF8.self)
                let name = full.split(separator: ":").last.map(String.init) ?? full
                if closing {
                    guard let top = stack.popLast(), top.name == name else { return nil }
                    continue
                }
                let node = S3XMLNode(name: name)
                if let parent = stack.last {
                    parent.children.append(node)
                } else {
                    guard root == nil else { return nil }
                    root = node
                }
                if !selfClosing { stack.append(node) }
            }
        }
        return stack.isEmpty ? root : nil
    }

    /// Text with `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` and `&#N;` / `&#xN;` replaced; nil for another `&`.
    static func decodeEntities(_ bytes: ArraySlice<UInt8>) -> String? {
        let s = String(decoding: bytes, as: UTF8.self)
        guard s.contains("&") else { return s }
        var out = ""
        var rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { return nil }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                guard entity.hasPrefix("#") else { return nil }
                let digits = entity.dropFirst()
                let value = digits.hasPrefix("x") ? UInt32(digits.dropFirst(), radix: 16) : UInt32(digits, radix: 10)
                guard let v = value, let scalar = Unicode.Scalar(v) else { return nil }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}

/// `<tag>text</tag>` with the text escaped (for the CompleteMultipartUpload body).
func xmlElement(_ tag: String, _ text: String) -> String {
    var out = ""
    for ch in text {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(ch)
        }
    }
    return "<\(tag)>\(out)</\(tag)>"
}
