-- A page of a project's deliveries walks them in id order within the project: without this
-- index it walked every project's deliveries by the primary key, checking each one's project.
CREATE INDEX deliveries_project_id ON deliveries (project, id);
