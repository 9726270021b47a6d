-- Schema 2 as `create_all` wrote it on sqlite (indexer/schema.py at 93f5d03).
CREATE TABLE settings (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);

CREATE TABLE roots (
	id INTEGER NOT NULL, 
	path VARCHAR(4096) NOT NULL, 
	added_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (path)
);

CREATE TABLE files (
	id INTEGER NOT NULL, 
	root_id INTEGER NOT NULL, 
	path VARCHAR(4096) NOT NULL, 
	size BIGINT NOT NULL, 
	mtime_ns BIGINT NOT NULL, 
	content_hash VARCHAR(64), 
	duration_s FLOAT, 
	sample_rate INTEGER, 
	channels INTEGER, 
	format VARCHAR(32), 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	indexed_at DATETIME NOT NULL, 
	title TEXT, 
	comment TEXT, 
	caption TEXT, 
	search_text TEXT DEFAULT '' NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(root_id) REFERENCES roots (id) ON DELETE CASCADE, 
	UNIQUE (path)
);

CREATE INDEX ix_files_root_id ON files (root_id);

CREATE INDEX ix_files_status ON files (status);

CREATE INDEX ix_files_content_hash ON files (content_hash);

CREATE TABLE segments (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	file_id INTEGER NOT NULL, 
	start_s FLOAT NOT NULL, 
	end_s FLOAT NOT NULL, 
	vector BLOB NOT NULL, 
	FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE
);

CREATE INDEX ix_segments_file_id ON segments (file_id);

CREATE TABLE tags (
	id INTEGER NOT NULL, 
	file_id INTEGER NOT NULL, 
	label VARCHAR(256) NOT NULL, 
	score FLOAT NOT NULL, 
	source VARCHAR(128) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (file_id, label, source), 
	FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE
);

CREATE INDEX ix_tags_file_id ON tags (file_id);

CREATE INDEX ix_tags_label ON tags (label);

CREATE VIRTUAL TABLE files_fts USING fts5(body, tokenize='unicode61 remove_diacritics 2');

