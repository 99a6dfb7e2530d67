-- pgaudit session logging of every write (INSERT, UPDATE, DELETE, TRUNCATE, COPY) to the server
-- log. Needs shared_preload_libraries = 'pgaudit'; the harness restarts the cluster for it.
CREATE EXTENSION pgaudit;
