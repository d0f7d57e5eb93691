import Crypto
import Foundation
import GRDB
import Hummingbird
import JWTKit
import ShopKit

/// Users: sign-up, log-in issuing a JWT (HS256, one hour), and token validation for other services.
@main
struct UsersService {
    static func main() async throws {
        let shop = try ShopService(name: "users")
        let database = try shop.openDatabase(schema: [
            """
            CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE, salt BLOB NOT NULL, password_hash BLOB NOT NULL)
            """,
            "CREATE TABLE IF NOT EXISTS signing_key (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB NOT NULL)",
        ])
        let accounts = Accounts(database: database, keys: try await signingKeys(database))
        let router = shop.makeRouter()
        router.post("/users") { request, context in
            let form = try await request.decode(as: Credentials.self, context: context)
            return EditedResponse(status: .created, response: try accounts.register(form))
        }
        router.post("/login") { request, context in
            try await accounts.logIn(try await request.decode(as: Credentials.self, context: context))
        }
        router.get("/validate") { request, _ in
            try await accounts.validate(authorization: request.headers[.authorization])
        }
        router.get("/users/:id") { _, context in
            try accounts.user(id: try context.parameters.require("id", as: Int64.self))
        }
        try await shop.run(router)
    }

    /// The HS256 key shared by every replica: made once, kept in the database.
    static func signingKeys(_ database: DatabasePool) async throws -> JWTKeyCollection {
        let secret = try await database.write { db in
            let fresh = Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
            try db.execute(sql: "INSERT OR IGNORE INTO signing_key (id, secret) VALUES (1, ?)", arguments: [fresh])
            return try Data.fetchOne(db, sql: "SELECT secret FROM signing_key WHERE id = 1")!
        }
        return await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }
}

struct Credentials: Decodable {
    let username: String
    let password: String
}

struct User: ResponseCodable, FetchableRecord {
    let id: Int64
    let username: String
}

struct Session: ResponseEncodable {
    let token: String
    let user: User
}

struct Claims: JWTPayload {
    var sub: SubjectClaim
    var name: String
    var exp: ExpirationClaim

    func verify(using algorithm: some JWTAlgorithm) async throws { try exp.verifyNotExpired() }
}

struct Accounts: Sendable {
    let database: DatabasePool
    let keys: JWTKeyCollection

    func register(_ form: Credentials) throws -> User {
        let username = form.username.trimmingCharacters(in: .whitespaces)
        guard !username.isEmpty, username.count <= 64 else { throw HTTPError(.badRequest, message: "username must be 1-64 characters") }
        guard form.password.count >= 8 else { throw HTTPError(.badRequest, message: "password must have at least 8 characters") }
        let salt = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        return try database.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM users WHERE username = ?", arguments: [username]) == true {
                throw HTTPError(.conflict, message: "username \(username) is taken")
            }
            try db.execute(sql: "INSERT INTO users (username, salt, password_hash) VALUES (?, ?, ?)",
                           arguments: [username, salt, Self.hash(form.password, salt: salt)])
            return User(id: db.lastInsertedRowID, username: username)
        }
    }

    func logIn(_ form: Credentials) async throws -> Session {
        let row = try database.read { db in
            try Row.fetchOne(db, sql: "SELECT id, username, salt, password_hash FROM users WHERE username = ?", arguments: [form.username])
        }
        guard let row, Self.hash(form.password, salt: row["salt"]) == row["password_hash"] as Data else {
            throw HTTPError(.unauthorized, message: "unknown username or wrong password")
        }
        let user = User(id: row["id"], username: row["username"])
        let claims = Claims(sub: SubjectClaim(value: String(user.id)), name: user.username,
                            exp: ExpirationClaim(value: Date().addingTimeInterval(3600)))
        return Session(token: try await keys.sign(claims), user: user)
    }

    func validate(authorization: String?) async throws -> User {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else {
            throw HTTPError(.unauthorized, message: "send Authorization: Bearer <token>")
        }
        let claims: Claims
        do {
            claims = try await keys.verify(String(authorization.dropFirst(7)), as: Claims.self)
        } catch {
            throw HTTPError(.unauthorized, message: "invalid or expired token")
        }
        guard let id = Int64(claims.sub.value) else { throw HTTPError(.unauthorized, message: "invalid token subject") }
        return try user(id: id)
    }

    func user(id: Int64) throws -> User {
        let user = try database.read { db in
            try User.fetchOne(db, sql: "SELECT id, username FROM users WHERE id = ?", arguments: [id])
        }
        guard let user else { throw HTTPError(.notFound, message: "no user \(id)") }
        return user
    }

    private static func hash(_ password: String, salt: Data) -> Data {
        Data(SHA256.hash(data: salt + Data(password.utf8)))
    }
}
