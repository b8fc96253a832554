// A BI tool's view of a database, reduced to plain JDBC: for each view named on the command line,
// what DatabaseMetaData says of it (its columns' and its own REMARKS, which tools show as
// descriptions), what ResultSetMetaData says of its columns, and its rows. It knows nothing of the
// extension that made the views, and no PostgreSQL class is named here: only java.sql.
//
//   java -cp postgresql-VERSION.jar tests/clients/BiViews.java JDBC_URL USER SCHEMA.VIEW...
//
// The password, if one is needed, comes from PGPASSWORD. Prints one JSON line for the driver, then
// one per view: {"view", "remarks", "columns": [{"name", "jdbc_type", "type_name", "class",
// "remarks"}], "value_classes": [[...] per column], "rows": [[...] per row]}. Values are written as
// JSON: integers and floating point as numbers (NaN and infinities as strings), NUMERIC as a
// string (exact), timestamps as ISO-8601 instants in UTC, dates as YYYY-MM-DD, everything else
// through toString().
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.JDBCType;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;

public class BiViews {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: BiViews JDBC_URL USER SCHEMA.VIEW...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        String password = System.getenv("PGPASSWORD");
        if (password != null) props.setProperty("password", password);
        StringBuilder out = new StringBuilder();
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            conn.setReadOnly(true);
            DatabaseMetaData md = conn.getMetaData();
            out.append("{\"driver\":").append(json(md.getDriverName()))
               .append(",\"driver_version\":").append(json(md.getDriverVersion()))
               .append(",\"server\":").append(json(md.getDatabaseProductVersion()))
               .append(",\"user\":").append(json(md.getUserName())).append("}\n");
            for (int i = 2; i < args.length; i++) out.append(readView(conn, md, args[i])).append('\n');
        }
        System.out.print(out);
        System.out.flush();
    }

    static String readView(Connection conn, DatabaseMetaData md, String view) throws Exception {
        int dot = view.indexOf('.');
        String schema = dot < 0 ? null : view.substring(0, dot);
        String name = view.substring(dot + 1);
        String viewRemarks = null;
        try (ResultSet t = md.getTables(null, schema, name, null)) {
            if (t.next()) viewRemarks = t.getString("REMARKS");
        }
        Map<String, String> colRemarks = new LinkedHashMap<>();
        try (ResultSet c = md.getColumns(null, schema, name, null)) {
            while (c.next()) colRemarks.put(c.getString("COLUMN_NAME"), c.getString("REMARKS"));
        }
        StringBuilder s = new StringBuilder();
        s.append("{\"view\":").append(json(view)).append(",\"remarks\":").append(json(viewRemarks));
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT * FROM " + view)) {
            ResultSetMetaData rm = rs.getMetaData();
            int n = rm.getColumnCount();
            s.append(",\"columns\":[");
            for (int c = 1; c <= n; c++) {
                if (c > 1) s.append(',');
                s.append("{\"name\":").append(json(rm.getColumnLabel(c)))
                 .append(",\"jdbc_type\":").append(json(jdbcTypeName(rm.getColumnType(c))))
                 .append(",\"type_name\":").append(json(rm.getColumnTypeName(c)))
                 .append(",\"class\":").append(json(rm.getColumnClassName(c)))
                 .append(",\"remarks\":").append(json(colRemarks.get(rm.getColumnName(c)))).append('}');
            }
            s.append("],\"rows\":[");
            List<TreeSet<String>> classes = new ArrayList<>();
            for (int c = 0; c < n; c++) classes.add(new TreeSet<>());
            boolean first = true;
            while (rs.next()) {
                s.append(first ? "[" : ",[");
                first = false;
                for (int c = 1; c <= n; c++) {
                    if (c > 1) s.append(',');
                    Object v = rs.getObject(c);
                    if (v != null) classes.get(c - 1).add(v.getClass().getName());
                    s.append(value(v));
                }
                s.append(']');
            }
            s.append("],\"value_classes\":[");
            for (int c = 0; c < n; c++) {
                s.append(c > 0 ? ",[" : "[");
                int k = 0;
                for (String cls : classes.get(c)) s.append(k++ > 0 ? "," : "").append(json(cls));
                s.append(']');
            }
            s.append("]}");
        }
        return s.toString();
    }

    static String jdbcTypeName(int type) {
        try {
            return JDBCType.valueOf(type).getName();
        } catch (IllegalArgumentException e) {
            return "VENDOR_" + type;
        }
    }

    static String value(Object v) {
        if (v == null) return "null";
        if (v instanceof Boolean) return v.toString();
        if (v instanceof Short || v instanceof Integer || v instanceof Long) return v.toString();
        if (v instanceof Float || v instanceof Double) {
            double d = ((Number) v).doubleValue();
            return Double.isFinite(d) ? v.toString() : json(v.toString());
        }
        if (v instanceof BigDecimal) return json(((BigDecimal) v).toPlainString());
        if (v instanceof Timestamp) return json(((Timestamp) v).toInstant().toString());
        if (v instanceof OffsetDateTime) return json(((OffsetDateTime) v).toInstant().toString());
        return json(v.toString());   // String, UUID, java.sql.Date (YYYY-MM-DD), anything else
    }

    static String json(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20 || ch > 0x7e) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.append('"').toString();
    }
}
